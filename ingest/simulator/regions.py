"""Korean regions the simulator places households in, with their climate.

Why a table and not one national climate: Daegu summers are hotter than Chuncheon's, Jeju winters
milder than Seoul's, and air conditioning and heating follow the local temperature, so the region
changes a household's load.  Monthly means are approximate KMA 1991–2020 normals; the national
tables (cloud cover, humidity, outdoor air quality, day-to-day spread) are shared by all regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    name: str
    latitude: float
    longitude: float
    #: monthly mean air temperature, January..December (°C)
    monthly_mean_c: tuple[float, ...]
    #: scales the national mean daily temperature range (coastal cities have smaller ranges)
    range_factor: float
    #: share of households placed here by :meth:`Fleet.generate`
    weight: float


REGIONS: tuple[Region, ...] = (
    Region(
        "Seoul",
        37.566,
        126.978,
        (-1.9, 0.7, 6.1, 12.6, 18.2, 22.7, 25.3, 26.1, 21.6, 15.0, 7.5, 0.2),
        1.00,
        0.30,
    ),
    Region(
        "Suwon",
        37.263,
        127.029,
        (-2.2, 0.5, 5.9, 12.2, 17.8, 22.4, 25.4, 25.9, 21.2, 14.4, 7.0, 0.0),
        1.08,
        0.14,
    ),
    Region(
        "Incheon",
        37.456,
        126.705,
        (-1.5, 0.6, 5.5, 11.3, 16.7, 21.0, 24.3, 25.6, 21.6, 15.2, 7.9, 0.8),
        0.85,
        0.09,
    ),
    Region(
        "Busan",
        35.180,
        129.076,
        (3.6, 5.4, 9.1, 13.7, 17.6, 20.9, 24.0, 25.9, 22.6, 18.2, 12.3, 6.0),
        0.80,
        0.11,
    ),
    Region(
        "Daegu",
        35.871,
        128.601,
        (0.9, 3.5, 8.6, 14.6, 19.8, 23.6, 26.1, 26.4, 21.9, 16.0, 9.2, 2.6),
        1.10,
        0.08,
    ),
    Region(
        "Daejeon",
        36.351,
        127.385,
        (-0.9, 1.6, 6.8, 13.0, 18.4, 22.7, 25.6, 26.2, 21.6, 14.9, 7.8, 1.2),
        1.12,
        0.06,
    ),
    Region(
        "Gwangju",
        35.160,
        126.851,
        (1.0, 2.8, 7.5, 13.4, 18.9, 23.0, 26.1, 26.7, 22.3, 16.2, 9.6, 3.2),
        1.05,
        0.06,
    ),
    Region(
        "Ulsan",
        35.539,
        129.311,
        (2.3, 4.3, 8.5, 13.6, 18.1, 21.4, 25.0, 26.0, 21.8, 16.4, 10.2, 4.2),
        0.95,
        0.05,
    ),
    Region(
        "Chuncheon",
        37.881,
        127.730,
        (-3.9, -0.8, 5.0, 11.7, 17.4, 22.0, 25.0, 25.1, 19.8, 12.6, 5.3, -1.9),
        1.25,
        0.04,
    ),
    Region(
        "Gangneung",
        37.752,
        128.876,
        (0.7, 2.3, 6.6, 12.9, 17.6, 20.8, 24.2, 24.9, 20.6, 15.6, 9.6, 3.2),
        0.90,
        0.03,
    ),
    Region(
        "Jeju",
        33.500,
        126.531,
        (6.1, 7.0, 9.9, 14.3, 18.2, 21.8, 26.3, 27.4, 23.6, 18.8, 13.1, 8.3),
        0.70,
        0.04,
    ),
)

REGION_NAMES: tuple[str, ...] = tuple(r.name for r in REGIONS)
REGION_INDEX: dict[str, int] = {name: i for i, name in enumerate(REGION_NAMES)}
LATITUDES = np.array([r.latitude for r in REGIONS])
LONGITUDES = np.array([r.longitude for r in REGIONS])
RANGE_FACTORS = np.array([r.range_factor for r in REGIONS])
REGION_WEIGHTS = np.array([r.weight for r in REGIONS]) / sum(r.weight for r in REGIONS)

# National monthly tables (January..December).
#: mean daily temperature range max − min (°C), Seoul-like station (normals: mean max − mean min)
DAILY_RANGE_C = (7.5, 8.0, 8.8, 9.5, 9.3, 8.3, 7.0, 7.6, 8.3, 9.4, 8.6, 7.7)
#: standard deviation of the day-to-day (synoptic) temperature anomaly (°C): winters vary more
ANOMALY_SD_C = (2.8, 2.7, 2.4, 2.0, 1.7, 1.5, 1.3, 1.3, 1.6, 1.9, 2.4, 2.7)
#: mean cloud cover 0..1 (the monsoon, jangma, makes July the cloudiest month)
CLOUD_MEAN = (0.38, 0.40, 0.45, 0.47, 0.50, 0.60, 0.74, 0.64, 0.52, 0.40, 0.42, 0.38)
#: mean relative humidity (%)
HUMIDITY_MEAN = (57, 56, 57, 57, 63, 69, 79, 76, 69, 64, 62, 58)
#: mean outdoor air-quality index (US-AQI scale from PM2.5): fine dust peaks in late winter/spring
AQI_MEAN = (70, 75, 85, 70, 60, 50, 40, 35, 35, 45, 60, 65)


def _harmonic_fit(monthly: np.ndarray, n_harmonics: int = 5) -> np.ndarray:
    """Coefficients of a smooth annual curve through 12 monthly means (rows: monthly series)."""
    doy = 15.2 + 30.44 * np.arange(12)
    cols = [np.ones(12)]
    for k in range(1, n_harmonics + 1):
        w = 2 * np.pi * k * doy / 365.25
        cols += [np.cos(w), np.sin(w)]
    basis = np.stack(cols, axis=1)  # 12 x (1 + 2k)
    coef, *_ = np.linalg.lstsq(basis, np.atleast_2d(monthly).T, rcond=None)
    return coef.T  # series x (1 + 2k)


def annual_curve(coef: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Evaluate harmonic coefficients (series x terms) at days of year -> series x len(doy)."""
    doy = np.asarray(doy, dtype=np.float64)
    n_harmonics = (coef.shape[1] - 1) // 2
    out = np.repeat(coef[:, :1], doy.size, axis=1)
    for k in range(1, n_harmonics + 1):
        w = 2 * np.pi * k * doy / 365.25
        out = out + coef[:, 2 * k - 1 : 2 * k] * np.cos(w) + coef[:, 2 * k : 2 * k + 1] * np.sin(w)
    return out


TEMP_COEF = _harmonic_fit(np.array([r.monthly_mean_c for r in REGIONS]))
NATIONAL_COEF = _harmonic_fit(
    np.array([DAILY_RANGE_C, ANOMALY_SD_C, CLOUD_MEAN, HUMIDITY_MEAN, AQI_MEAN], dtype=np.float64)
)
