"""Daily partitions on the household-local calendar (Asia/Seoul by default)."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

from hems.settings import get_settings


def daily_partitions() -> DailyPartitionsDefinition:
    settings = get_settings()
    return DailyPartitionsDefinition(
        start_date=settings.pipeline_start_date, timezone=settings.domain.timezone, end_offset=1
    )
