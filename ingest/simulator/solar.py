"""Sun position and rooftop PV output.

Why solar geometry instead of a bell curve: sunrise, day length and peak height change with
latitude and season (Jeju vs Chuncheon, June vs December), and the same geometry decides when
households switch the lights on.  Formulas are NOAA's low-accuracy ones (good to ~0.5°); the clear
sky is Haurwitz's model with a haze factor for Korea, clouds follow Kasten–Czeplak.
"""

from __future__ import annotations

import numpy as np

_DEG = np.pi / 180.0
#: typical Korean aerosol load dims the clear sky relative to Haurwitz's clean atmosphere
_HAZE = 0.85


def sun_geometry(utc_minutes: np.ndarray, lat_deg: np.ndarray, lon_deg: np.ndarray):
    """cos(zenith), declination and hour angle (radians); lat/lon broadcast against minutes.

    ``lat_deg``/``lon_deg`` are column vectors (k x 1) for k sites; minutes a row vector.
    """
    u = np.asarray(utc_minutes, dtype=np.float64)[None, :]
    days = u / 1440.0
    # fractional year from 2000-01-01 (10957 days after the epoch), mean Gregorian year
    gamma = 2.0 * np.pi * ((days - 10957.0) % 365.2425) / 365.2425
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    minute_of_day = u % 1440.0
    true_solar = minute_of_day + eqtime + 4.0 * lon_deg  # minutes
    hour_angle = (true_solar / 4.0 - 180.0) * _DEG
    lat = lat_deg * _DEG
    cosz = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    return cosz, decl, hour_angle


def pv_power_w(
    cosz: np.ndarray,
    decl: np.ndarray,
    hour_angle: np.ndarray,
    lat_deg: np.ndarray,
    tilt_deg: np.ndarray,
    cloud: np.ndarray,
    temp_c: np.ndarray,
    kwp: np.ndarray,
) -> np.ndarray:
    """AC output (W) of south-facing arrays; exactly zero while the sun is below the horizon."""
    up = cosz > 0.0
    cz = np.where(up, cosz, 1.0)
    ghi_clear = np.where(up, _HAZE * 1098.0 * cz * np.exp(-0.057 / cz), 0.0)
    ghi = ghi_clear * (1.0 - 0.75 * cloud**3.4)
    diffuse_frac = np.clip(0.12 + 0.75 * cloud**2, 0.12, 0.95)
    dhi = ghi * diffuse_frac
    beam_h = ghi - dhi
    lat = lat_deg * _DEG
    tilt = tilt_deg * _DEG
    cos_inc = np.sin(decl) * np.sin(lat - tilt) + np.cos(decl) * np.cos(lat - tilt) * np.cos(hour_angle)
    beam_ratio = np.clip(np.maximum(cos_inc, 0.0) / np.maximum(cz, 0.087), 0.0, 4.0)
    poa = beam_h * beam_ratio + dhi * (1 + np.cos(tilt)) / 2 + ghi * 0.2 * (1 - np.cos(tilt)) / 2
    cell_t = temp_c + poa * (25.0 / 800.0)
    derate = 0.83 * (1.0 - 0.004 * (cell_t - 25.0))
    return np.where(up, np.clip(kwp * poa * derate, 0.0, kwp * 1000.0), 0.0)
