"""Local days as minute grids, and which days Korean households treat as days off.

Why minute grids per local day: the register convention counts a household's day from local
midnight to local midnight, and behaviour follows the wall clock.  A DST-observing time zone has
23- and 25-hour days, so a day is a run of UTC minutes plus the wall-clock minute of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import numpy as np

#: holiday names (holidays.KR, English) on which many families travel to relatives
_FAMILY_HOLIDAYS = ("Korean New Year", "Chuseok")


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or a ValueError that names the bad value."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Seoul)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Seoul)") from exc


@lru_cache(maxsize=64)
def _kr_holidays(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("KR", years=year, language="en_US").items())


def holiday_name(d: date) -> str | None:
    return _kr_holidays(d.year).get(d)


def is_day_off(d: date) -> bool:
    """Weekends and Korean public holidays (incl. substitute holidays) behave like weekends."""
    return d.weekday() >= 5 or holiday_name(d) is not None


def is_family_holiday(d: date) -> bool:
    """Seollal and Chuseok: many households visit relatives and leave home empty."""
    name = holiday_name(d)
    return name is not None and any(key in name for key in _FAMILY_HOLIDAYS)


def local_midnight_ms(d: date, tz: ZoneInfo) -> int:
    """UTC epoch milliseconds of local midnight starting day ``d``."""
    return int(datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC).timestamp() * 1000)


@dataclass(frozen=True)
class DayGrid:
    """One local day: its UTC minutes and the wall-clock minute of day of each."""

    day: date
    start_ms: int
    n_minutes: int
    #: wall-clock minute of day (0..1439) of each UTC minute of the day
    clock: np.ndarray
    day_off: bool
    family_holiday: bool

    @property
    def start_minute(self) -> int:
        return self.start_ms // 60_000

    @property
    def utc_minutes(self) -> np.ndarray:
        return self.start_minute + np.arange(self.n_minutes, dtype=np.int64)


@lru_cache(maxsize=1024)
def day_grid(d: date, tz_name: str) -> DayGrid:
    tz = zone(tz_name)
    start = local_midnight_ms(d, tz)
    end = local_midnight_ms(d + timedelta(days=1), tz)
    n = (end - start) // 60_000
    if n == 1440 and _offset_min(start, tz) == _offset_min(end - 60_000, tz):
        clock = np.arange(1440, dtype=np.int64)
    else:
        # DST day: wall clock from the UTC offset of each minute (offsets change on 15-min marks)
        quarter = np.array([_offset_min(start + k * 900_000, tz) for k in range(n // 15 + 1)])
        offs = np.repeat(quarter, 15)[:n]
        clock = (np.arange(n) + offs - offs[0]) % 1440
    clock.setflags(write=False)
    return DayGrid(d, start, int(n), clock, is_day_off(d), is_family_holiday(d))


def _offset_min(ms: int, tz: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)
