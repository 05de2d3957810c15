"""`GET|PUT /users/profile`: the caller's own account; phone and address are encrypted at rest.

The database only ever holds AES-256-GCM ciphertext of phone and address
(:mod:`serving.security.field_crypto`); they are opened here, for their owner, and nowhere else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from hems.stores.appdb.models import User
from serving.deps import CurrentUser, EngineDep, unauthorized
from serving.security import FieldCipher, FieldDecryptError, open_user_field, seal_user_field

router = APIRouter(prefix="/users", tags=["users and households"])

_users = cast(sa.Table, User.__table__)
PHONE_PATTERN = r"^\+?[0-9][0-9 -]{6,19}$"


class Profile(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "email": "jiwoo@example.kr",
                    "full_name": "Kim Jiwoo",
                    "role": "resident",
                    "phone": "+82 10-1234-5678",
                    "address": "Seoul, Mapo-gu, World Cup-ro 1",
                    "created_at": "2025-07-01T09:00:00Z",
                }
            ]
        }
    )

    id: int
    email: str
    full_name: str | None
    role: str = Field(description="resident, analyst or admin")
    phone: str | None
    address: str | None
    created_at: dt.datetime


class ProfileUpdate(BaseModel):
    """Fields left out stay as they are; ``null`` clears phone, address or full_name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"full_name": "Kim Jiwoo", "phone": "+82 10-9876-5432"}]},
    )

    full_name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    address: str | None = Field(None, max_length=500)


def load_profile(engine: Engine, user_id: int, cipher: FieldCipher | None = None) -> Profile:
    with engine.connect() as conn:
        row = conn.execute(sa.select(_users).where(_users.c.id == user_id)).first()
    if row is None or not row.is_active:
        raise unauthorized("the account of this token no longer exists")
    cipher = cipher or FieldCipher.from_settings()
    try:
        phone = open_user_field(cipher, "phone_encrypted", row.id, row.phone_encrypted)
        address = open_user_field(cipher, "address_encrypted", row.id, row.address_encrypted)
    except FieldDecryptError as exc:  # misconfigured key ring: say so rather than return a 500
        raise HTTPException(503, f"personal fields cannot be decrypted: {exc}") from None
    return Profile(
        id=row.id,
        email=row.email,
        full_name=row.full_name,
        role=str(row.role),
        phone=phone,
        address=address,
        created_at=row.created_at,
    )


@router.get("/profile", response_model=Profile, summary="The caller's profile")
def get_profile(principal: CurrentUser, engine: EngineDep) -> Profile:
    return load_profile(engine, principal.user_id)


@router.put("/profile", response_model=Profile, summary="Change name, phone or address")
def put_profile(body: ProfileUpdate, principal: CurrentUser, engine: EngineDep) -> Profile:
    cipher = FieldCipher.from_settings()
    values: dict[str, Any] = {}
    if "full_name" in body.model_fields_set:
        values["full_name"] = body.full_name
    for field in ("phone", "address"):
        if field in body.model_fields_set:
            column = f"{field}_encrypted"
            values[column] = seal_user_field(cipher, column, principal.user_id, getattr(body, field))
    if values:
        with engine.begin() as conn:
            conn.execute(sa.update(_users).where(_users.c.id == principal.user_id).values(**values))
    return load_profile(engine, principal.user_id, cipher)
