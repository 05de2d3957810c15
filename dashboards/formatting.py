"""Number formatting for the dashboards: one place decides how kWh, KRW, CO₂ and shares look.

Why: a figure must read the same on every page and in both languages (KRW has no minor unit,
kWh keeps one decimal, a missing value is a dash rather than ``nan`` or ``None``).
"""

from __future__ import annotations

import math

MISSING = "–"


def _missing(value: float | int | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | int | None, digits: int = 0) -> str:
    """Thousands separators and a fixed number of decimals (``1,234.5``)."""
    if _missing(value):
        return MISSING
    return f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def kwh(value: float | int | None, digits: int = 1) -> str:
    """``1,234.5 kWh`` (the number comes first, so the value parses as ``float(text.split()[0])``)."""
    return MISSING if _missing(value) else f"{number(value, digits)} kWh"


def krw(value: float | int | None) -> str:
    """``₩12,340``: won have no minor unit, so whole won, rounded half away from zero."""
    if _missing(value):
        return MISSING
    won = math.floor(abs(float(value)) + 0.5)  # type: ignore[arg-type]
    return f"{'-' if float(value) < 0 and won else ''}₩{won:,}"  # type: ignore[arg-type]


def co2(value: float | int | None, digits: int = 1) -> str:
    """``12.3 kgCO₂e``."""
    return MISSING if _missing(value) else f"{number(value, digits)} kgCO₂e"


def pct(ratio: float | int | None, digits: int = 1) -> str:
    """A ratio (0.123) as ``12.3%``."""
    return MISSING if _missing(ratio) else f"{float(ratio) * 100:,.{digits}f}%"  # type: ignore[arg-type]


def points(value: float | int | None) -> str:
    """Reward points, whole numbers (``1,200 P``)."""
    return MISSING if _missing(value) else f"{number(value, 0)} P"
