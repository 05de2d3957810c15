"""Monthly partitions for cashback and weather-normalized savings; one partition per DR event.

A demand-response event's partition key says what it is: ``YYYY-MM-DDTHH-HH`` — the local event
day and its hours [start, end), e.g. ``2026-11-20T17-20`` for 17:00–20:00. Events are added from
the Dagster UI (partition "add"), by ``hems incentives --dr-event`` or by the demo.
"""

import re
from dataclasses import dataclass
from datetime import date

from dagster import DynamicPartitionsDefinition, MonthlyPartitionsDefinition

from hems.settings import get_settings

DR_EVENTS = DynamicPartitionsDefinition(name="dr_events")
_EVENT_KEY = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})$")


def monthly_partitions() -> MonthlyPartitionsDefinition:
    settings = get_settings()
    return MonthlyPartitionsDefinition(
        start_date=settings.pipeline_start_date[:7] + "-01", timezone=settings.domain.timezone, end_offset=1
    )


@dataclass(frozen=True)
class DrEvent:
    key: str
    day: date
    hours: tuple[int, ...]


def parse_dr_event(key: str) -> DrEvent:
    """``2026-11-20T17-20`` → the event day and hours 17, 18, 19 (a clear error otherwise)."""
    match = _EVENT_KEY.match(key)
    if not match:
        raise ValueError(f"DR event key {key!r} is not YYYY-MM-DDTHH-HH (local day, hours [start, end))")
    day, start, end = date.fromisoformat(match[1]), int(match[2]), int(match[3])
    if not 0 <= start < end <= 24:
        raise ValueError(f"DR event key {key!r}: hours must satisfy 0 <= start < end <= 24")
    return DrEvent(key, day, tuple(range(start, end)))


def dr_event_key(day: date, start_hour: int, end_hour: int) -> str:
    key = f"{day.isoformat()}T{start_hour:02d}-{end_hour:02d}"
    parse_dr_event(key)
    return key
