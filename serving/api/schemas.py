"""Schemas shared by several routers: pages of results."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: ``total`` counts every match, ``items`` holds ``limit`` from ``offset``."""

    items: list[T]
    total: int = Field(ge=0, examples=[42])
    limit: int = Field(ge=1, examples=[20])
    offset: int = Field(ge=0, examples=[0])
