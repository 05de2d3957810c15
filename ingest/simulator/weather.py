"""Regional outdoor weather: seasonal normals, a diurnal cycle and day-to-day weather systems.

Why every value is a pure function of (seed, date): a simulation must not change when it is split
into chunks or resumed, so nothing here carries state between calls.  The day-to-day (synoptic)
anomaly is a stationary AR(1) process written as its moving-average form truncated after
``_AR_TERMS`` days (the dropped weight is φ^80 ≈ 1e-11), driven by innovations drawn per calendar
date; a day's weather therefore depends only on the innovations of the 80 days up to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from ingest.simulator.regions import (
    LATITUDES,
    LONGITUDES,
    NATIONAL_COEF,
    RANGE_FACTORS,
    REGIONS,
    TEMP_COEF,
    annual_curve,
)

_AR_TERMS = 80
_PHI_TEMP = 0.72
_PHI_CLOUD = 0.55
_PHI_AQI = 0.70
_N_REGIONS = len(REGIONS)
#: draws per date: temperature/cloud/AQI innovations (one common + one per region each), 24 hourly
#: cloud wiggles per region
_DRAWS_PER_DAY = 3 * (1 + _N_REGIONS) + 24 * _N_REGIONS


def _doy(ordinals: np.ndarray) -> np.ndarray:
    """Day of year (1-based, fractional ok) of proleptic Gregorian ordinals, via 365.2425-day years."""
    # date(2000, 1, 1).toordinal() == 730120; the error of the mean-year approximation is < 1 day
    return (np.asarray(ordinals, dtype=np.float64) - 730120.0) % 365.2425 + 1.0


def _innovations(seed: int, ordinals: range) -> np.ndarray:
    """Standard normal draws for each date (rows), from a generator seeded by the date itself."""
    out = np.empty((len(ordinals), _DRAWS_PER_DAY))
    for i, o in enumerate(ordinals):
        out[i] = np.random.default_rng([seed, 101, o]).standard_normal(_DRAWS_PER_DAY)
    return out


def _ar1(eps: np.ndarray, phi: float, n_out: int) -> np.ndarray:
    """Stationary unit-variance AR(1) from innovations; row j of the output uses eps rows j..j+K-1.

    Accumulates term by term (a fixed order per output element) so a date's value is bit-identical
    whatever range it is computed in.
    """
    scale = np.sqrt(1.0 - phi * phi)
    k_last = _AR_TERMS - 1
    acc = np.zeros((n_out, *eps.shape[1:]))
    for k in range(_AR_TERMS):
        acc = acc + (scale * phi**k) * eps[k_last - k : k_last - k + n_out]
    return acc


@dataclass(frozen=True)
class DailyWeather:
    """Per region and day: the inputs of the minute-level weather (rows: days, cols: regions)."""

    first_ordinal: int
    temp_mean: np.ndarray  # daily mean temperature °C
    half_range: np.ndarray  # half of max − min °C
    cloud: np.ndarray  # daily cloud cover 0..1
    humidity: np.ndarray  # daily mean relative humidity %
    aqi: np.ndarray  # outdoor air-quality index
    cloud_hourly: np.ndarray  # (days*24, regions) hourly cloud wiggle, −1..1-ish

    def row(self, d: date) -> int:
        return d.toordinal() - self.first_ordinal


def daily_weather(seed: int, first: date, last: date) -> DailyWeather:
    """Daily weather for every region from ``first`` to ``last`` inclusive."""
    lo, hi = first.toordinal(), last.toordinal()
    n = hi - lo + 1
    eps = _innovations(seed, range(lo - _AR_TERMS + 1, hi + 1))
    r = _N_REGIONS
    # the peninsula is small: weather systems are mostly shared, partly regional
    t_eps = 0.85 * eps[:, :1] + 0.53 * eps[:, 1 : 1 + r]
    c_eps = 0.75 * eps[:, 1 + r : 2 + r] + 0.66 * eps[:, 2 + r : 2 + 2 * r]
    q_eps = 0.80 * eps[:, 2 + 2 * r : 3 + 2 * r] + 0.60 * eps[:, 3 + 2 * r : 3 + 3 * r]
    t_anom = _ar1(t_eps, _PHI_TEMP, n)
    c_anom = _ar1(c_eps, _PHI_CLOUD, n)
    q_anom = _ar1(q_eps, _PHI_AQI, n)

    doy = _doy(np.arange(lo, hi + 1))
    normal = annual_curve(TEMP_COEF, doy).T  # days x regions
    rng_c, sd_c, cloud_c, hum_c, aqi_c = annual_curve(NATIONAL_COEF, doy)
    temp_mean = normal + sd_c[:, None] * t_anom
    cloud_mean = np.clip(cloud_c, 0.05, 0.95)
    logit = np.log(cloud_mean / (1 - cloud_mean))
    cloud = 1.0 / (1.0 + np.exp(-(logit[:, None] + 1.7 * c_anom)))
    # clear days have a large diurnal range, overcast days a small one (mean-preserving)
    half_range = 0.5 * rng_c[:, None] * RANGE_FACTORS[None, :] * (1.0 + 0.7 * (cloud_mean[:, None] - cloud))
    humidity = np.clip(hum_c[:, None] + 22.0 * (cloud - cloud_mean[:, None]), 25.0, 98.0)
    aqi = aqi_c[:, None] * np.exp(0.45 * q_anom - 0.1)
    wiggle = eps[_AR_TERMS - 1 :, 3 + 3 * r :].reshape(n, r, 24).transpose(0, 2, 1).reshape(n * 24, r)
    return DailyWeather(lo, temp_mean, half_range, cloud, humidity, aqi, wiggle)


def _diurnal_shape(solar_hour: np.ndarray) -> np.ndarray:
    """−1 at 05:00 solar time (minimum), +1 at 14:00 (maximum); zero mean over a day."""
    h = solar_hour
    rising = (h >= 5.0) & (h < 14.0)
    back = np.where(h >= 14.0, h - 14.0, h + 10.0)  # hours since the maximum
    return np.where(rising, -np.cos(np.pi * (h - 5.0) / 9.0), np.cos(np.pi * back / 15.0))


@dataclass(frozen=True)
class MinuteWeather:
    """Weather of every region at given UTC minutes (arrays: regions x minutes)."""

    temperature: np.ndarray
    cloud: np.ndarray
    humidity: np.ndarray


def minute_weather(dw: DailyWeather, utc_minutes: np.ndarray) -> MinuteWeather:
    """Interpolate daily values (anchored at local solar noon) and add the diurnal cycle.

    Only absolute quantities enter the arithmetic (no offsets relative to ``dw.first_ordinal``
    except integer row indices), so results do not depend on the range ``dw`` covers.
    """
    u = np.asarray(utc_minutes, dtype=np.float64)
    # local mean solar time of each region as a fractional date ordinal (regions x minutes);
    # 719163 is the ordinal of 1970-01-01
    solar = (u[None, :] / 1440.0 + 719163.0) + LONGITUDES[:, None] / 360.0
    solar_hour = (solar - np.floor(solar)) * 24.0
    # daily anchors at solar noon: interpolate between day i and i+1
    pos = solar - 0.5
    base = np.floor(pos)
    w = pos - base
    idx = base.astype(np.int64) - dw.first_ordinal
    cols = np.arange(LONGITUDES.size)[:, None]

    def lerp(a: np.ndarray) -> np.ndarray:
        return a[idx, cols] * (1.0 - w) + a[idx + 1, cols] * w

    shape = _diurnal_shape(solar_hour)
    temperature = lerp(dw.temp_mean) + lerp(dw.half_range) * shape
    # hourly cloud wiggle on absolute solar hours
    hpos = solar * 24.0 - 0.5
    hbase = np.floor(hpos)
    hw = hpos - hbase
    hidx = hbase.astype(np.int64) - dw.first_ordinal * 24
    wig = dw.cloud_hourly[hidx, cols] * (1.0 - hw) + dw.cloud_hourly[hidx + 1, cols] * hw
    cloud = np.clip(lerp(dw.cloud) + 0.12 * wig, 0.0, 1.0)
    humidity = np.clip(lerp(dw.humidity) - 2.0 * lerp(dw.half_range) * shape, 15.0, 100.0)
    return MinuteWeather(temperature, cloud, humidity)


def daily_max_temperature(dw: DailyWeather, day_start_minute: int, n_minutes: int) -> np.ndarray:
    """Maximum temperature of each region over a local day (°C), on a 10-minute grid."""
    u = day_start_minute + np.arange(0, n_minutes, 10, dtype=np.int64)
    return minute_weather(dw, u).temperature.max(axis=1)


__all__ = ["LATITUDES", "DailyWeather", "MinuteWeather", "daily_weather", "minute_weather"]
