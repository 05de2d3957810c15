"""Optimization tips from a household's own data, each with its estimated monthly effect.

Four kinds, each a pure function of Polars frames (so the API, the dashboards and the tests get
the same numbers):

* ``flexible_load`` — laundry, dishwasher and EV charging in the TOU peak (16–22 h): the kWh a
  month that could move to off-peak.  Appliances come from smart plugs named after them and, for
  homes with an EV, from meter hours at least 3 kWh above the home's median for that hour;
* ``standby`` — always-on power above the typical share of use (≈ 6 %, DESIGN §5): standby is the
  median over days of the day's lowest meter power; the effect is the excess kWh and what it
  costs at the home's KEPCO tier;
* ``tier_crossing`` — month-to-date use plus the last week's daily rate for the rest of the month
  crosses the next KEPCO block: projected kWh, the kWh to save to stay below it and the bill
  difference (``hems.domain.tariff``, the same tariff rows as the marts);
* ``cooling`` — a home whose daily kWh rises with cooling degree days (outdoor mean above 24 °C)
  much faster than similar homes (same building type and residents): the excess kWh a month at
  this month's heat.

KRW effects are bill differences with the progressive tariff, not kWh × an average price.
"""

from __future__ import annotations

import calendar
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl

from hems.domain.tariff import default_tariff, kepco_bill

TOU_PEAK_HOURS = tuple(range(16, 22))
TYPICAL_STANDBY_SHARE = 0.06
STANDBY_TRIGGER = 1.5  # tip when standby exceeds 1.5 × the typical share
COOLING_TRIGGER = 1.5  # tip when the cooling slope exceeds 1.5 × the peers' median
EV_EXCESS_KWH = 3.0
FLEXIBLE = ("laundry", "dishwasher", "ev")
_PLUG_NAMES = {
    "washer": "laundry",
    "dryer": "laundry",
    "laundry": "laundry",
    "dishwasher": "dishwasher",
    "ev": "ev",
}


@dataclass(frozen=True)
class Tip:
    household_id: str
    kind: str
    title: str
    detail: str
    effect_kwh_month: float
    effect_krw_month: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bill_saving(month_kwh: float, saved_kwh: float, month: date) -> float:
    """KRW a month saved by using ``saved_kwh`` less out of ``month_kwh`` (bill difference)."""
    saved = min(max(saved_kwh, 0.0), month_kwh)
    return float(
        kepco_bill(round(month_kwh, 3), month).total - kepco_bill(round(month_kwh - saved, 3), month).total
    )


# --------------------------------------------------------------------------- flexible load
def plug_appliance(device_id: str) -> str | None:
    """The flexible appliance a smart plug feeds, from its device id (…-plug-washer → laundry)."""
    last = device_id.rsplit("-", 1)[-1].lower()
    return _PLUG_NAMES.get(last)


def hourly_plug_load(readings: pl.DataFrame) -> pl.DataFrame:
    """Hourly kWh of flexible appliances on smart plugs: household_id, ts, appliance, kwh."""
    plugs = readings.filter((pl.col("device_type") == "smart_plug") & pl.col("power_w").is_not_null())
    plugs = plugs.with_columns(
        pl.col("device_id").map_elements(plug_appliance, return_dtype=pl.String).alias("appliance")
    ).filter(pl.col("appliance").is_not_null())
    return (
        plugs.group_by("household_id", "appliance", pl.col("ts").dt.truncate("1h"))
        .agg((pl.col("power_w").mean() / 1000).alias("kwh"))
        .sort("household_id", "ts")
    )


def ev_from_meter(hourly: pl.DataFrame) -> pl.DataFrame:
    """EV charging hours of EV homes: kWh above the home's median for that hour, when ≥ 3 kWh."""
    h = hourly.filter(pl.col("has_ev") & pl.col("kwh").is_not_null())
    excess = pl.col("kwh") - pl.col("kwh").median().over("household_id", "hour")
    return (
        h.with_columns(excess.alias("excess"))
        .filter(pl.col("excess") >= EV_EXCESS_KWH)
        .select("household_id", "ts", pl.lit("ev").alias("appliance"), pl.col("excess").alias("kwh"))
    )


def flexible_load_tips(
    flex: pl.DataFrame, timezone: str = "Asia/Seoul", min_kwh_month: float = 2.0
) -> list[Tip]:
    """Tips for flexible appliances used in the TOU peak (at least ``min_kwh_month`` movable)."""
    if flex.is_empty():
        return []
    local = flex.with_columns(pl.col("ts").dt.convert_time_zone(timezone).alias("_l"))
    days = local.select(pl.col("_l").dt.date().n_unique()).item() or 1
    per = local.group_by("household_id", "appliance").agg(
        pl.col("kwh").filter(pl.col("_l").dt.hour().is_in(list(TOU_PEAK_HOURS))).sum().alias("peak_kwh"),
        pl.col("kwh").sum().alias("total_kwh"),
    )
    tips = []
    for row in per.sort("household_id", "appliance").iter_rows(named=True):
        month_kwh = row["peak_kwh"] / days * 30.0
        if month_kwh < min_kwh_month:
            continue
        share = row["peak_kwh"] / row["total_kwh"] if row["total_kwh"] else 0.0
        tips.append(
            Tip(
                row["household_id"],
                "flexible_load",
                f"Run the {row['appliance']} after 22:00",
                f"{share:.0%} of its use falls in the 16–22 h peak: about {month_kwh:.1f} kWh a month "
                "could move to off-peak hours.",
                round(month_kwh, 2),
                None,
                {"appliance": row["appliance"], "peak_share": round(share, 3), "days": days},
            )
        )
    return tips


# --------------------------------------------------------------------------- standby
def standby_tips(
    stats: pl.DataFrame, daily: pl.DataFrame, month: date, timezone: str = "Asia/Seoul"
) -> list[Tip]:
    """Standby (median daily minimum power) above STANDBY_TRIGGER × the typical 6 % share of use."""
    local = stats.filter(pl.col("power_min_w").is_not_null()).with_columns(
        pl.col("ts").dt.convert_time_zone(timezone).dt.date().alias("_d")
    )
    standby = (
        local.group_by("household_id", "_d")
        .agg(pl.col("power_min_w").min())
        .group_by("household_id")
        .agg(pl.col("power_min_w").median().alias("standby_w"))
    )
    use = daily.group_by("household_id").agg(pl.col("kwh").mean().alias("day_kwh"))
    tips = []
    for row in standby.join(use, on="household_id").sort("household_id").iter_rows(named=True):
        standby_month = row["standby_w"] * 24 * 30 / 1000
        month_kwh = row["day_kwh"] * 30
        share = standby_month / month_kwh if month_kwh else 0.0
        if share <= STANDBY_TRIGGER * TYPICAL_STANDBY_SHARE:
            continue
        excess = (share - TYPICAL_STANDBY_SHARE) * month_kwh
        tips.append(
            Tip(
                row["household_id"],
                "standby",
                "Cut standby power",
                f"Always-on load is {row['standby_w']:.0f} W, {share:.0%} of your use (typical: 6%). "
                f"Bringing it to the typical share saves about {excess:.1f} kWh a month.",
                round(excess, 2),
                bill_saving(month_kwh, excess, month),
                {"standby_w": round(row["standby_w"], 1), "share": round(share, 4)},
            )
        )
    return tips


# --------------------------------------------------------------------------- tier crossing
def tier_tips(daily: pl.DataFrame, as_of: date, rate_days: int = 7) -> list[Tip]:
    """Projected crossing of the next KEPCO block before the month ends (daily kWh up to ``as_of``)."""
    month = as_of.replace(day=1)
    days_in_month = calendar.monthrange(as_of.year, as_of.month)[1]
    remaining = days_in_month - as_of.day
    rates = default_tariff().rates_for(month)
    edges = [float(b.to_kwh) for b in rates.blocks if b.to_kwh is not None]
    mtd = daily.filter((pl.col("local_date") >= month) & (pl.col("local_date") <= as_of))
    recent = daily.filter(
        (pl.col("local_date") > as_of - timedelta(days=rate_days)) & (pl.col("local_date") <= as_of)
    )
    frame = (
        mtd.group_by("household_id")
        .agg(pl.col("kwh").sum().alias("mtd"))
        .join(recent.group_by("household_id").agg(pl.col("kwh").mean().alias("rate")), on="household_id")
    )
    tips = []
    for row in frame.sort("household_id").iter_rows(named=True):
        projected = row["mtd"] + row["rate"] * remaining
        crossed = [e for e in edges if row["mtd"] < e < projected]
        if not crossed:
            continue
        edge = crossed[0]
        over = projected - edge
        diff = float(kepco_bill(round(projected, 3), month).total - kepco_bill(edge, month).total)
        tips.append(
            Tip(
                row["household_id"],
                "tier_crossing",
                f"On track to pass {edge:.0f} kWh this month",
                f"{row['mtd']:.0f} kWh so far; at {row['rate']:.1f} kWh a day you reach {projected:.0f} kWh "
                f"by month end. Saving {over:.0f} kWh ({over / max(remaining, 1):.1f} kWh a day) keeps you "
                f"in the lower block and {diff:,.0f} KRW off the bill.",
                round(over, 2),
                diff,
                {
                    "month_to_date_kwh": round(row["mtd"], 2),
                    "projected_kwh": round(projected, 2),
                    "block_edge_kwh": edge,
                },
            )
        )
    return tips


# --------------------------------------------------------------------------- cooling
def cooling_slopes(daily: pl.DataFrame, min_days: int = 5) -> pl.DataFrame:
    """Per household: kWh per cooling degree day (least squares of daily kWh on CDD)."""
    x, y = pl.col("cdd"), pl.col("kwh")
    cov = ((x - x.mean()) * (y - y.mean())).sum()
    var = ((x - x.mean()) ** 2).sum()
    return (
        daily.group_by("household_id", "building_type", "residents")
        .agg(
            (cov / var).alias("kwh_per_cdd"),
            (x > 0).sum().alias("hot_days"),
            x.filter(x > 0).mean().alias("mean_cdd"),
        )
        .filter((pl.col("hot_days") >= min_days) & pl.col("kwh_per_cdd").is_finite())
    )


def cooling_tips(daily: pl.DataFrame, month: date, min_peers: int = 3) -> list[Tip]:
    """Cooling use far above similar homes (same building type, residents capped at 4)."""
    slopes = cooling_slopes(daily).with_columns(
        pl.concat_str(
            [pl.col("building_type"), pl.col("residents").clip(upper_bound=4).cast(pl.String)]
        ).alias("seg")
    )
    peers = slopes.group_by("seg").agg(pl.col("kwh_per_cdd").median().alias("peer"), pl.len().alias("n"))
    frame = slopes.join(peers, on="seg").filter(pl.col("n") >= min_peers)
    use = daily.group_by("household_id").agg(pl.col("kwh").mean().alias("day_kwh"))
    tips = []
    for row in frame.join(use, on="household_id").sort("household_id").iter_rows(named=True):
        peer = max(row["peer"], 0.0)
        if row["kwh_per_cdd"] <= COOLING_TRIGGER * max(peer, 0.1):
            continue
        excess = (row["kwh_per_cdd"] - peer) * row["mean_cdd"] * 30
        tips.append(
            Tip(
                row["household_id"],
                "cooling",
                "Cooling uses more than in similar homes",
                f"Each degree of heat adds {row['kwh_per_cdd']:.2f} kWh a day here against {peer:.2f} in "
                f"similar homes: about {excess:.1f} kWh a month more. Raise the set-point to 26 °C and "
                "close blinds.",
                round(excess, 2),
                bill_saving(row["day_kwh"] * 30, excess, month),
                {"kwh_per_cdd": round(row["kwh_per_cdd"], 3), "peer_kwh_per_cdd": round(peer, 3)},
            )
        )
    return tips


def all_tips(
    stats: pl.DataFrame,
    hourly: pl.DataFrame,
    daily: pl.DataFrame,
    as_of: date,
    plugs: pl.DataFrame | None = None,
    timezone: str = "Asia/Seoul",
) -> list[Tip]:
    """Every tip for the households in the frames, as of local day ``as_of``."""
    month = as_of.replace(day=1)
    flex = [ev_from_meter(hourly)]
    if plugs is not None and plugs.height:
        flex.append(plugs.select("household_id", "ts", "appliance", "kwh"))
    tips = flexible_load_tips(pl.concat(flex, how="vertical_relaxed"), timezone)
    tips += standby_tips(stats, daily, month, timezone)
    tips += tier_tips(daily, as_of)
    tips += cooling_tips(daily, month)
    return sorted(tips, key=lambda t: (t.household_id, -(t.effect_kwh_month or 0)))


def tips_frame(tips: list[Tip]) -> pl.DataFrame:
    rows = [{**t.to_dict(), "data": str(t.data)} for t in tips]
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"household_id": pl.String, "kind": pl.String})


__all__ = [
    "TOU_PEAK_HOURS",
    "TYPICAL_STANDBY_SHARE",
    "Tip",
    "all_tips",
    "bill_saving",
    "cooling_slopes",
    "cooling_tips",
    "ev_from_meter",
    "flexible_load_tips",
    "hourly_plug_load",
    "plug_appliance",
    "standby_tips",
    "tier_tips",
    "tips_frame",
]
