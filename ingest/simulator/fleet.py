"""A fleet of simulated Korean households: public attributes plus the hidden appliance parameters.

Why the split: the attributes frame is what the platform learns about a household at sign-up
(type, building, area, region, PV, EV, heating) and what downstream tables join on; the hidden
parameters (fridge size, wake-up time, AC set-point, ...) give each home its own habits and stay
inside the simulator.  Everything is drawn from ``seed`` once, so a fleet is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import polars as pl

from hems.contracts import DeviceType
from ingest.simulator.calendar import zone
from ingest.simulator.regions import LATITUDES, LONGITUDES, REGION_NAMES, REGION_WEIGHTS

HOUSEHOLD_TYPES = ("single", "couple", "family", "elderly")
SINGLE, COUPLE, FAMILY, ELDERLY = range(4)
#: shares of Korean households: one-person homes are the largest group
TYPE_WEIGHTS = (0.33, 0.27, 0.30, 0.10)
BUILDING_TYPES = ("apartment", "detached")

#: registers count energy in units of 2^-30 kWh (~0.9 µWh) as int64, so register arithmetic,
#: daily deltas and truth sums are all exact
ENERGY_QUANTUM_KWH = 2.0**-30
UNITS_PER_KWH = 2.0**30


class HouseholdParams(SimpleNamespace):
    """Per-household numpy arrays (one entry per household, fleet order)."""

    def take(self, sl: slice) -> HouseholdParams:
        return HouseholdParams(**{k: v[sl] for k, v in vars(self).items()})

    @property
    def size(self) -> int:
        return len(self.type_code)


def _by_type(type_code: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[type_code]


def _draw_params(n: int, rng: np.random.Generator) -> HouseholdParams:
    """All per-household draws; the order of draws is part of the reproducibility contract."""
    t = rng.choice(4, size=n, p=TYPE_WEIGHTS)
    u = rng.random((64, n))  # independent uniforms, one row per purpose
    z = rng.standard_normal((16, n))

    def uni(row: int, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
        return lo + (hi - lo) * u[row]

    residents = np.select(
        [t == SINGLE, t == COUPLE, t == FAMILY],
        [np.ones(n), np.full(n, 2.0), 3.0 + (u[0] > 0.45) + (u[0] > 0.87)],
        1.0 + (u[0] > 0.45),
    ).astype(np.int64)
    apartment = u[1] < _by_type(t, (0.72, 0.68, 0.68, 0.45))
    lo_area = _by_type(t, (22, 50, 72, 45))
    hi_area = _by_type(t, (60, 100, 135, 105))
    area = np.round(uni(2, lo_area, hi_area) * np.where(apartment, 1.0, uni(3, 1.0, 1.4)), 1)
    region = rng.choice(len(REGION_NAMES), size=n, p=REGION_WEIGHTS)
    has_pv = u[4] < np.where(apartment, 0.02, 0.30)
    pv_kwp = np.where(has_pv, np.round(uni(5, 3.0, 5.0), 1), 0.0)
    ev_p = np.where(apartment, _by_type(t, (0.01, 0.03, 0.045, 0.0)), _by_type(t, (0.03, 0.08, 0.12, 0.02)))
    has_ev = u[6] < ev_p
    electric_heating = u[7] < np.where(apartment, 0.10, np.where(t == ELDERLY, 0.30, 0.24))
    scale = 1.06 * np.exp(0.15 * z[0])  # frugal or lavish within a type

    employed = u[8] < _by_type(t, (0.85, 0.70, 0.55, 0.0))
    # presence while the earners are out: homemakers, children, retirees, home workers
    day_level = np.where(employed, 0.0, np.where(t == FAMILY, 0.5, 1.0))
    wake = _by_type(t, (450, 440, 425, 380)) + 25 * z[1]
    late_off = _by_type(t, (100, 90, 75, 15))
    sleep = _by_type(t, (1475, 1440, 1415, 1335)) + 30 * z[2]
    ret = _by_type(t, (1170, 1155, 1140, 1100)) + 35 * z[3]

    p = HouseholdParams(
        type_code=t,
        residents=residents,
        apartment=apartment,
        area=area,
        region=region,
        latitude=LATITUDES[region],
        longitude=LONGITUDES[region],
        has_pv=has_pv,
        pv_kwp=pv_kwp,
        pv_tilt=uni(9, 18.0, 35.0),
        has_ev=has_ev,
        ev_kw=uni(10, 6.6, 7.4),
        ev_day_p=uni(11, 0.30, 0.55),
        ev_kwh=uni(12, 10.0, 22.0),
        electric_heating=electric_heating,
        heat_rated=uni(13, 1500.0, 3000.0),
        heat_sp=uni(14, 20.0, 23.0),
        heat_cop=uni(15, 2.5, 3.2),
        has_mat=(~electric_heating) & (u[16] < _by_type(t, (0.35, 0.5, 0.45, 0.7))),
        mat_w=uni(17, 60.0, 140.0),
        employed=employed,
        day_level=day_level,
        has_kids=(t == FAMILY),
        wake_work=wake,
        wake_off=wake + late_off,
        sleep=sleep,
        return_t=ret,
        standby_w=np.maximum(_by_type(t, (16, 24, 33, 19)) + _by_type(t, (3, 4, 5, 3)) * z[4], 8.0),
        fridge_w=uni(18, 100.0, 150.0) * np.where(t == SINGLE, 0.85, 1.0),
        fridge_period=np.floor(uni(19, 20.0, 41.0)).astype(np.int64),
        fridge_duty=uni(20, 0.34, 0.40),
        fridge_phase=np.floor(uni(21, 0.0, 1440.0)).astype(np.int64),
        kimchi_w=np.where(u[22] < _by_type(t, (0.2, 0.55, 0.8, 0.7)), uni(23, 55.0, 85.0), 0.0),
        kimchi_period=np.floor(uni(24, 40.0, 61.0)).astype(np.int64),
        kimchi_phase=np.floor(uni(25, 0.0, 1440.0)).astype(np.int64),
        base_other_w=uni(26, 8.0, 30.0) * _by_type(t, (0.7, 1.0, 1.3, 1.0)),
        other_phase=np.floor(uni(27, 0.0, 17.0)).astype(np.int64),
        light_w=area * uni(28, 1.2, 2.0) * residents**0.25,
        tv_w=uni(29, 90.0, 180.0) * _by_type(t, (0.9, 1.0, 1.3, 1.1)),
        tv_p=_by_type(t, (0.55, 0.75, 0.85, 0.95)),
        pc_w=uni(30, 80.0, 250.0),
        pc_p=_by_type(t, (0.55, 0.35, 0.5, 0.05)) * (u[31] < 0.8),
        misc_w=_by_type(t, (65, 95, 130, 55)) * uni(32, 0.7, 1.3),
        hair_p=_by_type(t, (0.6, 0.7, 0.85, 0.3)),
        breakfast_p=_by_type(t, (0.3, 0.55, 0.85, 0.9)),
        lunch_p=_by_type(t, (0.4, 0.5, 0.7, 0.85)),
        dinner_p=_by_type(t, (0.45, 0.75, 0.92, 0.9)),
        induction_w=np.where(u[33] < _by_type(t, (0.45, 0.5, 0.55, 0.35)), uni(34, 1500.0, 3000.0), 0.0),
        rice_w=uni(35, 1000.0, 1350.0),
        keep_warm=u[36] < _by_type(t, (0.2, 0.35, 0.45, 0.5)),
        washes_week=_by_type(t, (2.0, 3.0, 5.0, 3.0)) * uni(37, 0.7, 1.3),
        has_dryer=u[38] < _by_type(t, (0.15, 0.35, 0.5, 0.1)),
        dryer_w=uni(39, 700.0, 1000.0),
        dish_week=np.where(u[40] < _by_type(t, (0.05, 0.25, 0.4, 0.05)), uni(41, 3.0, 6.0), 0.0),
        has_ac=u[42] < _by_type(t, (0.9, 0.97, 0.98, 0.9)),
        ac_rated=_by_type(t, (1400, 1900, 2400, 1700)) * uni(43, 0.85, 1.15),
        ac_sp=uni(44, 24.0, 27.0),
        ac_gate=uni(45, 27.0, 33.0) + (t == ELDERLY),
        ac_night_p=_by_type(t, (0.45, 0.55, 0.6, 0.3)),
        has_fridge_plug=u[46] < 0.5,
        has_washer_plug=u[47] < 0.3,
        v_off=np.clip(0.008 * z[5], -0.02, 0.02),
        vent=uni(48, 0.8, 1.25),
        scale=scale,
        meter_import0=np.round(uni(49, 1000.0, 30000.0) * 1024) / 1024,
        meter_export0=np.where(has_pv, np.round(uni(50, 0.0, 3000.0) * 1024) / 1024, 0.0),
        fridge_plug0=np.round(uni(51, 5.0, 600.0) * 1024) / 1024,
        washer_plug0=np.round(uni(52, 5.0, 300.0) * 1024) / 1024,
    )
    return p


@dataclass(frozen=True, eq=False)
class Fleet:
    """Households to simulate.  Build with :meth:`generate`; pass to ``simulate_days``."""

    households: pl.DataFrame
    devices: pl.DataFrame
    seed: int
    timezone: str
    params: HouseholdParams = field(repr=False)

    @classmethod
    def generate(
        cls,
        n_households: int,
        seed: int = 42,
        timezone: str | None = None,
        id_prefix: str = "hh",
    ) -> Fleet:
        """A reproducible fleet: the same arguments always give the same households.

        ``timezone`` defaults to the platform setting (``HEMS_DOMAIN__TIMEZONE``, Asia/Seoul).
        """
        if isinstance(n_households, bool) or not isinstance(n_households, int | np.integer):
            raise ValueError(f"n_households must be an integer, got {n_households!r}")
        if n_households <= 0:
            raise ValueError(f"n_households must be positive, got {n_households}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if timezone is None:
            from hems.settings import get_settings

            timezone = get_settings().domain.timezone
        zone(timezone)
        if not id_prefix or "/" in id_prefix or "+" in id_prefix or "#" in id_prefix:
            raise ValueError(f"id_prefix must be non-empty, without MQTT topic characters, got {id_prefix!r}")

        n = int(n_households)
        p = _draw_params(n, np.random.default_rng([int(seed), 0, n]))
        width = max(5, len(str(n)))
        ids = [f"{id_prefix}-{i + 1:0{width}d}" for i in range(n)]
        households = pl.DataFrame(
            {
                "household_id": ids,
                "household_type": [HOUSEHOLD_TYPES[c] for c in p.type_code],
                "building_type": np.where(p.apartment, "apartment", "detached").tolist(),
                "area_m2": p.area,
                "residents": p.residents,
                "region": [REGION_NAMES[r] for r in p.region],
                "latitude": p.latitude,
                "has_pv": p.has_pv,
                "pv_kwp": p.pv_kwp,
                "has_ev": p.has_ev,
                "electric_heating": p.electric_heating,
                "timezone": [timezone] * n,
            },
            schema_overrides={"residents": pl.Int64},
        )
        return cls(households, _devices(ids, p), int(seed), timezone, p)

    @property
    def n_households(self) -> int:
        return self.households.height

    @property
    def household_ids(self) -> list[str]:
        return self.households["household_id"].to_list()


def _devices(ids: list[str], p: HouseholdParams) -> pl.DataFrame:
    rows: list[tuple[str, str, str, str | None]] = []
    for i, hh in enumerate(ids):
        rows.append((hh, f"{hh}-meter", DeviceType.smart_meter.value, None))
        if p.has_pv[i]:
            rows.append((hh, f"{hh}-pv", DeviceType.solar_inverter.value, None))
        rows.append((hh, f"{hh}-env", DeviceType.env_sensor.value, None))
        if p.has_fridge_plug[i]:
            rows.append((hh, f"{hh}-plug-fridge", DeviceType.smart_plug.value, "refrigerator"))
        if p.has_washer_plug[i]:
            rows.append((hh, f"{hh}-plug-washer", DeviceType.smart_plug.value, "washer"))
    return pl.DataFrame(rows, schema=["household_id", "device_id", "device_type", "appliance"], orient="row")
