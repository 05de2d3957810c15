"""Turn a fleet into canonical readings, daily ground truth and weather, one local day at a time.

Register convention (the warehouse and the end-to-end test rely on it): minute ``i`` of a day
covers ``[ts_i, ts_i + 1 min)`` and carries energy ``power_i / 60000`` kWh; the register reported
at ``ts_i`` counts everything strictly before ``ts_i``.  A run of D days emits D·1440/freq
intervals per device and one extra boundary reading of every register at the local midnight after
the last day, so each day's total is ``R(next midnight) − R(midnight)``.  With ``freq_minutes`` f > 1
a reading covers ``[ts, ts + f min)``: ``power_w`` is that interval's mean net import power and the
register convention is unchanged (the model itself always runs at one minute).

Minute energies are quantized to 2^-30 kWh and registers are integer multiples of that quantum,
so register deltas equal the ground truth exactly, and continuing from a returned state gives
bit-identical results to one long run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from hems.contracts import READING_FIELDS, DeviceType, empty_readings
from ingest.simulator.behavior import (
    BEHAVIOR_COMPONENTS,
    SPILL,
    Behavior,
    DayDraws,
    Steps,
    day_draws,
    render_behavior,
)
from ingest.simulator.calendar import DayGrid, day_grid
from ingest.simulator.fleet import UNITS_PER_KWH, Fleet, HouseholdParams
from ingest.simulator.regions import LATITUDES, LONGITUDES, REGION_NAMES
from ingest.simulator.solar import pv_power_w, sun_geometry
from ingest.simulator.weather import DailyWeather, daily_weather, minute_weather

#: appliance columns of the per-day breakdown (washer and dryer are reported together as laundry)
APPLIANCES = (
    "standby",
    "refrigerator",
    "lighting",
    "cooking",
    "entertainment",
    "laundry",
    "dishwasher",
    "cooling",
    "heating",
    "ev",
    "other",
)
#: power factor of loads that are not near-resistive (cooking, heating, EV, dishwasher ≈ 1):
#: motors lower, switch-mode standby supplies lowest; apparent power adds P·(1/pf − 1) per load
_PF = {
    "standby": 0.60,
    "refrigerator": 0.80,
    "other_base": 0.90,
    "lighting": 0.92,
    "entertainment": 0.93,
    "washer": 0.75,
    "dryer": 0.90,
    "cooling": 0.95,
    "other": 0.88,
}
_PF_EXTRA = {k: 1.0 / v - 1.0 for k, v in _PF.items()}
_PF_EXTRA_COMPONENTS = ("lighting", "entertainment", "washer", "dryer", "cooling", "other")
_W_PER_UNIT = 60000.0 / UNITS_PER_KWH  # watts of one quantum per minute
_BLOCK = 64  # households per internal block: keeps intermediate arrays around 1 MB (cache-friendly)
#: ground truth per household and local day; import is split by the TOU band of each minute's
#: local start hour: off-peak 22–08, mid 08–16, peak 16–22
TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "household_id": pl.String(),
    "date": pl.Date(),
    "import_kwh": pl.Float64(),
    "export_kwh": pl.Float64(),
    "load_kwh": pl.Float64(),
    "pv_kwh": pl.Float64(),
    "import_off_peak_kwh": pl.Float64(),
    "import_mid_kwh": pl.Float64(),
    "import_peak_kwh": pl.Float64(),
}


_REGISTERS = ("meter_import", "meter_export", "fridge_plug", "washer_plug")


@dataclass(frozen=True, eq=False)
class SimState:
    """Where a run stopped: the next local day and every register (in 2^-30 kWh units)."""

    next_date: date
    seed: int
    timezone: str
    n_households: int
    meter_import: np.ndarray
    meter_export: np.ndarray
    fridge_plug: np.ndarray
    washer_plug: np.ndarray

    @classmethod
    def initial(cls, fleet: Fleet, start: date) -> SimState:
        p = fleet.params

        def units(kwh: np.ndarray) -> np.ndarray:
            return np.rint(kwh * UNITS_PER_KWH).astype(np.int64)

        return cls(
            start,
            fleet.seed,
            fleet.timezone,
            fleet.n_households,
            units(p.meter_import0),
            units(p.meter_export0),
            units(p.fridge_plug0),
            units(p.washer_plug0),
        )

    def copy(self, next_date: date | None = None) -> SimState:
        return SimState(
            next_date or self.next_date,
            self.seed,
            self.timezone,
            self.n_households,
            self.meter_import.copy(),
            self.meter_export.copy(),
            self.fridge_plug.copy(),
            self.washer_plug.copy(),
        )

    def to_dict(self) -> dict:
        """A JSON-serializable form, so a pipeline can persist the state between runs/partitions."""
        return {
            "next_date": self.next_date.isoformat(),
            "seed": self.seed,
            "timezone": self.timezone,
            "n_households": self.n_households,
            **{k: getattr(self, k).tolist() for k in _REGISTERS},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SimState:
        arrays = {k: np.asarray(data[k], dtype=np.int64) for k in _REGISTERS}
        return cls(
            date.fromisoformat(data["next_date"]),
            int(data["seed"]),
            str(data["timezone"]),
            int(data["n_households"]),
            **arrays,
        )

    def registers(self, fleet: Fleet) -> pl.DataFrame:
        """Register values (kWh) per household at local midnight of ``next_date``."""
        q = 1.0 / UNITS_PER_KWH
        return pl.DataFrame(
            {
                "household_id": fleet.household_ids,
                "meter_import_kwh": self.meter_import * q,
                "meter_export_kwh": self.meter_export * q,
                "fridge_plug_kwh": self.fridge_plug * q,
                "washer_plug_kwh": self.washer_plug * q,
            }
        )


@dataclass(frozen=True, eq=False)
class DayChunk:
    """One local day (or one household batch of it).

    ``readings`` are canonical readings ordered by device type, household and time; the chunk of
    the last day also holds the boundary register readings at the following midnight.  ``truth``
    follows :data:`TRUTH_SCHEMA`; ``appliances`` is the kWh per appliance group (``APPLIANCES``);
    ``weather`` is hourly per region (:data:`hems.contracts.WEATHER`, only on a day's first batch).
    ``state`` continues the run (set on the chunk that completes a day, None on earlier batches).
    """

    day: date
    readings: pl.DataFrame
    truth: pl.DataFrame
    weather: pl.DataFrame
    appliances: pl.DataFrame
    state: SimState | None
    is_last: bool


@dataclass(frozen=True, eq=False)
class Simulation:
    """All chunks of a run concatenated (convenient for tests and small demos)."""

    readings: pl.DataFrame
    truth: pl.DataFrame
    weather: pl.DataFrame
    appliances: pl.DataFrame
    state: SimState


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _validate(
    fleet: Fleet,
    start: date | None,
    days: int,
    freq_minutes: int,
    env_freq_minutes: int,
    state: SimState | None,
    batch_households: int | None,
) -> date:
    """Check every argument up front; each error names the argument and the accepted values."""
    if not isinstance(fleet, Fleet):
        raise ValueError(f"fleet must be a Fleet (use Fleet.generate), got {type(fleet).__name__}")
    ints = (("days", days), ("freq_minutes", freq_minutes), ("env_freq_minutes", env_freq_minutes))
    for name, value in ints:
        if not _is_int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    for name, value in ints[1:]:
        if value <= 0 or 60 % value:
            raise ValueError(f"{name} must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60), got {value}")
    if batch_households is not None and (not _is_int(batch_households) or batch_households <= 0):
        raise ValueError(f"batch_households must be a positive integer or None, got {batch_households!r}")
    if start is not None and (isinstance(start, datetime) or not isinstance(start, date)):
        raise ValueError(f"start must be a datetime.date (a local calendar day), got {start!r}")
    if state is not None:
        fleet_key = (fleet.seed, fleet.timezone, fleet.n_households)
        if (state.seed, state.timezone, state.n_households) != fleet_key:
            raise ValueError("state belongs to a different fleet (seed, timezone or size differ)")
        if start is not None and start != state.next_date:
            raise ValueError(f"start {start} does not continue the state (its next day is {state.next_date})")
        return state.next_date
    if start is None:
        raise ValueError("give start (a local calendar day) or a state to continue from")
    return start


def simulate_days(
    fleet: Fleet,
    start: date | None = None,
    days: int = 1,
    freq_minutes: int = 1,
    *,
    state: SimState | None = None,
    env_freq_minutes: int = 5,
    batch_households: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[DayChunk]:
    """Simulate ``days`` local days from ``start`` (or from ``state.next_date``), one chunk per day.

    Memory stays bounded by one day (times ``batch_households`` households when given, which
    splits each day into several chunks).  ``progress(done, total)`` is called after each chunk.
    Arguments are validated here, before the first chunk, so mistakes fail at the call.
    """
    first = _validate(fleet, start, days, freq_minutes, env_freq_minutes, state, batch_households)
    state = state or SimState.initial(fleet, first)
    return _Run(
        fleet, first, int(days), int(freq_minutes), int(env_freq_minutes), state, batch_households, progress
    ).chunks()


def simulate(
    fleet: Fleet,
    start: date | None = None,
    days: int = 1,
    freq_minutes: int = 1,
    *,
    state: SimState | None = None,
    env_freq_minutes: int = 5,
    batch_households: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Simulation:
    """Run :func:`simulate_days` and concatenate its chunks (for tests and small fleets)."""
    chunks = list(
        simulate_days(
            fleet,
            start,
            days,
            freq_minutes,
            state=state,
            env_freq_minutes=env_freq_minutes,
            batch_households=batch_households,
            progress=progress,
        )
    )
    return Simulation(
        readings=pl.concat([c.readings for c in chunks]),
        truth=pl.concat([c.truth for c in chunks]),
        weather=pl.concat([c.weather for c in chunks]),
        appliances=pl.concat([c.appliances for c in chunks]),
        state=next(c.state for c in reversed(chunks) if c.state is not None),
    )


@dataclass
class _DayEnv:
    """Everything about one local day that is shared by all households."""

    grid: DayGrid
    window_clock: np.ndarray  # wall-clock minute of each window minute (0..CLOCK_WIDTH)
    temp: np.ndarray  # regions x window
    temp_lag: np.ndarray
    cloud: np.ndarray
    humidity: np.ndarray
    daylight: np.ndarray
    cosz: np.ndarray
    decl: np.ndarray
    hour_angle: np.ndarray
    t_max: np.ndarray  # regions
    t_mean: np.ndarray  # regions
    aqi: np.ndarray  # regions
    draws: DayDraws
    tou: np.ndarray  # minutes x 3 (off-peak, mid, peak) one-hot, own day
    v_profile: np.ndarray  # minutes


@dataclass
class _Part:
    """Device readings of one block as numpy columns (rows: household-major, then time)."""

    hh: list[np.ndarray] = field(default_factory=list)
    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, hh: np.ndarray, **cols: np.ndarray) -> None:
        self.hh.append(hh)
        for k, v in cols.items():
            self.cols.setdefault(k, []).append(v)


class _Run:
    def __init__(
        self,
        fleet: Fleet,
        first: date,
        days: int,
        freq: int,
        env_freq: int,
        state: SimState,
        batch: int | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.fleet, self.first, self.days, self.freq = fleet, first, days, freq
        self.env_freq = max(env_freq, freq)
        self.state = state.copy()  # registers advance in place; never touch the caller's state
        self.batch = batch or fleet.n_households
        self.progress = progress
        self.tz = fleet.timezone
        self.p = fleet.params
        self.n = fleet.n_households
        # weather of every day a behaviour window, its spill or the boundary reading touches
        self.dw: DailyWeather = daily_weather(
            fleet.seed, first - timedelta(days=3), first + timedelta(days=days + 4)
        )
        self.envs: dict[date, _DayEnv] = {}
        self.spill: dict[tuple[date, int], dict[str, np.ndarray]] = {}
        ids = fleet.households["household_id"]
        self.ids = ids

        def id_frame(suffix: str) -> pl.DataFrame:
            return pl.DataFrame([ids, (ids + suffix).alias("device_id")])

        meter, plug_f, plug_w = id_frame("-meter"), id_frame("-plug-fridge"), id_frame("-plug-washer")
        self.id_frames: dict[str, tuple[DeviceType, pl.DataFrame]] = {
            "meter": (DeviceType.smart_meter, meter),
            "pv": (DeviceType.solar_inverter, id_frame("-pv")),
            "env": (DeviceType.env_sensor, id_frame("-env")),
            "fridge": (DeviceType.smart_plug, plug_f),
            "washer": (DeviceType.smart_plug, plug_w),
            "boundary_m": (DeviceType.smart_meter, meter),
            "boundary_f": (DeviceType.smart_plug, plug_f),
            "boundary_w": (DeviceType.smart_plug, plug_w),
        }
        self.regions = sorted(set(self.p.region.tolist()))

    # ------------------------------------------------------------------ shared per day
    def env(self, d: date) -> _DayEnv:
        if d not in self.envs:
            self.envs = {k: v for k, v in self.envs.items() if k >= d - timedelta(days=1)}
            self.envs[d] = self._make_env(d)
        return self.envs[d]

    def _make_env(self, d: date) -> _DayEnv:
        grid = day_grid(d, self.tz)
        nxt = day_grid(d + timedelta(days=1), self.tz)
        width = grid.n_minutes + SPILL
        u = grid.start_minute + np.arange(width, dtype=np.int64)
        clock = np.concatenate([grid.clock, 1440 + nxt.clock[:SPILL]])
        mw = minute_weather(self.dw, u)
        lag = minute_weather(self.dw, u - 90).temperature
        cosz, decl, ha = sun_geometry(u, LATITUDES[:, None], LONGITUDES[:, None])
        daylight = np.clip(cosz / 0.17, 0.0, 1.0) * (1.0 - 0.5 * mw.cloud)
        own = slice(0, grid.n_minutes)
        row = self.dw.row(d)
        hour = grid.clock // 60
        tou = np.stack(
            [(hour >= 22) | (hour < 8), (hour >= 8) & (hour < 16), (hour >= 16) & (hour < 22)], axis=1
        )
        h = grid.clock / 60.0
        v_profile = -1.5 * np.exp(-(((h - 20.5) / 2.5) ** 2)) + 1.0 * np.exp(-(((h - 3.5) / 3.0) ** 2))
        return _DayEnv(
            grid=grid,
            window_clock=clock,
            temp=mw.temperature,
            temp_lag=lag,
            cloud=mw.cloud,
            humidity=mw.humidity,
            daylight=daylight,
            cosz=cosz,
            decl=decl,
            hour_angle=ha,
            t_max=mw.temperature[:, own].max(axis=1),
            t_mean=self.dw.temp_mean[row],
            aqi=self.dw.aqi[row],
            draws=day_draws(self.fleet.seed, d, self.n),
            tou=tou.astype(np.float64),
            v_profile=v_profile,
        )

    # ------------------------------------------------------------------ behaviour days
    def behavior(self, d: date, lo: int, hi: int) -> Behavior:
        e = self.env(d)
        p = self.p.take(slice(lo, hi))
        r = p.region
        width = e.window_clock.size
        noise = _uniform_block(self.fleet.seed, 3, d, lo, hi, width)
        return render_behavior(
            p,
            e.draws.take(slice(lo, hi)),
            e.grid,
            e.window_clock,
            e.temp[r],
            e.temp_lag[r],
            e.daylight[r],
            e.t_max[r],
            e.t_mean[r],
            noise,
        )

    def spill_of(self, d: date, lo: int, hi: int) -> dict[str, np.ndarray]:
        """The part of behaviour day ``d`` that falls into day ``d + 1`` (recomputed if needed)."""
        key = (d, lo)
        if key not in self.spill:
            self.spill[key] = _spill(self.behavior(d, lo, hi), self.env(d).grid.n_minutes)
        return self.spill.pop(key)

    # ------------------------------------------------------------------ the run
    def chunks(self) -> Iterator[DayChunk]:
        total = self.days * -(-self.n // self.batch)
        done = 0
        for k in range(self.days):
            d = self.first + timedelta(days=k)
            last_day = k == self.days - 1
            for b0 in range(0, self.n, self.batch):
                b1 = min(self.n, b0 + self.batch)
                chunk = self._chunk(d, b0, b1, last_day, first_batch=b0 == 0, day_complete=b1 == self.n)
                done += 1
                if self.progress is not None:
                    self.progress(done, total)
                yield chunk

    def _block(self, d: date, lo: int, hi: int, last_day: bool):
        """Everything of one block of households for day ``d`` (independent of other blocks)."""
        parts = {k: _Part() for k in self.id_frames}
        prev = self.spill_of(d - timedelta(days=1), lo, hi)
        beh = self.behavior(d, lo, hi)
        self.spill[(d, lo)] = _spill(beh, self.env(d).grid.n_minutes)
        truth, appl = self._own_day(d, lo, hi, beh, prev, parts)
        if last_day:
            self._own_day(d + timedelta(days=1), lo, hi, None, self.spill[(d, lo)], parts, boundary=True)
        return parts, truth, appl

    def _chunk(
        self, d: date, b0: int, b1: int, last_day: bool, first_batch: bool, day_complete: bool
    ) -> DayChunk:
        results = [self._block(d, lo, min(b1, lo + _BLOCK), last_day) for lo in range(b0, b1, _BLOCK)]
        parts = {k: _Part() for k in self.id_frames}
        for block_parts, _, _ in results:
            for key, part in block_parts.items():
                parts[key].hh += part.hh
                for col, arrays in part.cols.items():
                    parts[key].cols.setdefault(col, []).extend(arrays)
        truth = [t for _, t, _ in results]
        appl = [a for _, _, a in results]
        readings = self._readings(d, parts, last_day)
        if day_complete:
            self.spill = {k: v for k, v in self.spill.items() if k[0] == d}
        state = None
        if day_complete:
            state = self.state.copy(d + timedelta(days=1))
        return DayChunk(
            day=d,
            readings=readings,
            truth=self._truth_frame(d, b0, b1, truth),
            weather=self._weather_frame(d) if first_batch else self._weather_frame(d).clear(),
            appliances=self._appliance_frame(d, b0, b1, appl),
            state=state,
            is_last=last_day and day_complete,
        )

    # ------------------------------------------------------------------ one day, one block
    def _own_day(
        self,
        d: date,
        lo: int,
        hi: int,
        beh: Behavior | None,
        prev: dict[str, np.ndarray],
        parts: dict[str, _Part],
        boundary: bool = False,
    ):
        e = self.env(d)
        g = e.grid
        L = g.n_minutes
        nb = hi - lo
        p = self.p.take(slice(lo, hi))
        r = p.region
        head = min(SPILL, L)

        def own(name: str) -> np.ndarray:
            if beh is None:  # boundary: day d has not started behaving before 05:00
                out = np.zeros((nb, L))
                out[:, :head] = prev[name][:, :head]
                return out
            a = beh.power[name] if name in beh.power else getattr(beh, name)
            a[:, :head] += prev[name][:, :head]
            return a[:, :L]

        comps = {c: own(c) for c in BEHAVIOR_COMPONENTS}
        presence, asleep = own("presence"), own("asleep")

        # appliances that run on their own clock, continuous across midnight
        t_room = 22.0 + 0.25 * (e.t_mean[r] - 15.0)
        duty = np.clip(p.fridge_duty + 0.008 * (t_room - 22.0), 0.25, 0.6)
        j = np.arange(L, dtype=np.float64)[None, :]
        u0 = g.start_minute
        on_min = np.rint(p.fridge_period * duty)
        fridge = p.fridge_w[:, None] * _square(u0 + p.fridge_phase, p.fridge_period, on_min, j)
        defrost = Steps(nb, width=L, earliest=0)  # 20 minutes of defrost heater once a day
        first = (-(u0 + 7 * p.fridge_phase)) % 1440
        for k in range(-1, 2):
            defrost.add(np.ones(nb, dtype=bool), first + 1440 * k, first + 1440 * k + 20, 180.0)
        fridge = fridge + defrost.render()
        on_min = np.rint(p.kimchi_period * 0.3)
        kimchi = p.kimchi_w[:, None] * _square(u0 + p.kimchi_phase, p.kimchi_period, on_min, j)
        # water purifier and heated bidet seat, cycling every 17 minutes; the seat works harder in winter
        season = 1.0 + 0.02 * np.clip(15.0 - e.t_mean[r], -10.0, 20.0)
        cycle = _square(u0 + p.other_phase, np.full(nb, 17), 6.0, j)
        other_base = (3.0 * p.base_other_w * season)[:, None] * cycle
        standby = p.standby_w[:, None]

        # total load, and the apparent power that sets the power factor (near-unity loads omitted)
        load = standby + fridge
        load += kimchi
        load += other_base
        for c in BEHAVIOR_COMPONENTS:
            load += comps[c]
        extra = (fridge + kimchi) * _PF_EXTRA["refrigerator"]
        extra += standby * _PF_EXTRA["standby"]
        for name, arr in (("other_base", other_base), *((c, comps[c]) for c in _PF_EXTRA_COMPONENTS)):
            extra += arr * _PF_EXTRA[name]

        pv_rows = np.flatnonzero(p.has_pv)
        k_load = np.rint(load * (1.0 / _W_PER_UNIT))
        k_pv = np.zeros((nb, L))
        if pv_rows.size:
            rr = r[pv_rows]
            pv = pv_power_w(
                e.cosz[rr, :L],
                e.decl[:, :L],
                e.hour_angle[rr, :L],
                p.latitude[pv_rows, None],
                p.pv_tilt[pv_rows, None],
                e.cloud[rr, :L],
                e.temp[rr, :L],
                p.pv_kwp[pv_rows, None],
            )
            k_pv[pv_rows] = np.rint(pv * (1.0 / _W_PER_UNIT))
        k_net = k_load - k_pv
        k_imp = np.maximum(k_net, 0.0)
        k_exp = np.maximum(-k_net, 0.0) if pv_rows.size else np.zeros((nb, L))

        f = self.freq
        n_int = L // f
        v_noise = _uniform_block(self.fleet.seed, 4, d, lo, hi, L)
        volts = k_net * (-0.5 * _W_PER_UNIT / 1000.0)  # the voltage sags under load, rises on export
        volts += (220.0 * (1.0 + p.v_off))[:, None] + e.v_profile[None, :]
        volts += 1.2 * (v_noise - 0.5)
        volts = np.round(np.clip(volts, 213.4, 226.6), 1)

        def per_interval(a: np.ndarray) -> np.ndarray:
            return a if f == 1 else a.reshape(a.shape[0], n_int, f).sum(axis=2)

        imp_i, exp_i, net_i = per_interval(k_imp), per_interval(k_exp), per_interval(k_net)
        load_i = per_interval(load)
        pf = np.round(np.clip(load_i / np.maximum(load_i + per_interval(extra), 1e-9), 0.85, 0.99), 3)
        v_i = volts[:, ::f]
        current = np.round(np.abs(net_i) * (_W_PER_UNIT / f) / (v_i * pf), 3)
        ts = g.start_ms + np.arange(n_int, dtype=np.int64) * (f * 60_000)
        hh = np.arange(lo, hi)
        q = 1.0 / UNITS_PER_KWH
        st = self.state

        imp_units = imp_i.astype(np.int64)
        r_imp = _registers(st.meter_import[lo:hi], imp_units)
        r_exp = np.repeat(st.meter_export[lo:hi, None], n_int, axis=1)
        exp_units = exp_i[pv_rows].astype(np.int64)
        if pv_rows.size:
            r_exp[pv_rows] = _registers(st.meter_export[lo:hi][pv_rows], exp_units)
        fp = np.flatnonzero(p.has_fridge_plug)
        wp = np.flatnonzero(p.has_washer_plug)
        fr_units = per_interval(np.rint(fridge[fp] * (1.0 / _W_PER_UNIT))).astype(np.int64)
        wa_units = per_interval(np.rint(comps["washer"][wp] * (1.0 / _W_PER_UNIT))).astype(np.int64)
        r_fr = _registers(st.fridge_plug[lo:hi][fp], fr_units)
        r_wa = _registers(st.washer_plug[lo:hi][wp], wa_units)
        w_unit = _W_PER_UNIT / f

        if boundary:  # only the readings at the first timestamp; registers do not advance
            parts["boundary_m"].add(
                hh,
                ts=ts[:1].repeat(nb),
                power_w=imp_i[:, 0] * w_unit,
                energy_import_kwh=r_imp[:, 0] * q,
                energy_export_kwh=r_exp[:, 0] * q,
                voltage_v=v_i[:, 0],
                current_a=current[:, 0],
                power_factor=pf[:, 0],
            )
            parts["boundary_f"].add(
                hh[fp],
                ts=ts[:1].repeat(fp.size),
                power_w=fr_units[:, 0] * w_unit,
                energy_import_kwh=r_fr[:, 0] * q,
            )
            parts["boundary_w"].add(
                hh[wp],
                ts=ts[:1].repeat(wp.size),
                power_w=wa_units[:, 0] * w_unit,
                energy_import_kwh=r_wa[:, 0] * q,
            )
            return None, None

        parts["meter"].add(
            np.repeat(hh, n_int),
            ts=np.tile(ts, nb),
            power_w=(imp_i * w_unit).ravel(),
            energy_import_kwh=(r_imp * q).ravel(),
            energy_export_kwh=(r_exp * q).ravel(),
            voltage_v=v_i.ravel(),
            current_a=current.ravel(),
            power_factor=pf.ravel(),
        )
        if pv_rows.size:
            parts["pv"].add(
                np.repeat(hh[pv_rows], n_int),
                ts=np.tile(ts, pv_rows.size),
                solar_power_w=(per_interval(k_pv[pv_rows]) * w_unit).ravel(),
            )
        if fp.size:
            parts["fridge"].add(
                np.repeat(hh[fp], n_int),
                ts=np.tile(ts, fp.size),
                power_w=(fr_units * w_unit).ravel(),
                energy_import_kwh=(r_fr * q).ravel(),
            )
        if wp.size:
            parts["washer"].add(
                np.repeat(hh[wp], n_int),
                ts=np.tile(ts, wp.size),
                power_w=(wa_units * w_unit).ravel(),
                energy_import_kwh=(r_wa * q).ravel(),
            )
        self._env_readings(d, lo, hi, p, e, presence, asleep, comps, parts["env"])

        # advance the registers to the next midnight
        st.meter_import[lo:hi] += imp_units.sum(axis=1)
        st.meter_export[lo + pv_rows] += exp_units.sum(axis=1)
        st.fridge_plug[lo + fp] += fr_units.sum(axis=1)
        st.washer_plug[lo + wp] += wa_units.sum(axis=1)

        tou = k_imp @ e.tou
        truth = {
            "hh": hh,
            "import": k_imp.sum(axis=1) * q,
            "export": k_exp.sum(axis=1) * q,
            "load": k_load.sum(axis=1) * q,
            "pv": k_pv.sum(axis=1) * q,
            "off": tou[:, 0] * q,
            "mid": tou[:, 1] * q,
            "peak": tou[:, 2] * q,
        }
        kwh = 1.0 / 60000.0
        appl = {
            "hh": hh,
            "standby": p.standby_w * (L * kwh),
            "refrigerator": (fridge.sum(axis=1) + kimchi.sum(axis=1)) * kwh,
            "laundry": (comps["washer"].sum(axis=1) + comps["dryer"].sum(axis=1)) * kwh,
            "other": (comps["other"].sum(axis=1) + other_base.sum(axis=1)) * kwh,
        }
        for c in ("lighting", "cooking", "entertainment", "dishwasher", "cooling", "heating", "ev"):
            appl[c] = comps[c].sum(axis=1) * kwh
        return truth, appl

    def _env_readings(
        self,
        d: date,
        lo: int,
        hi: int,
        p: HouseholdParams,
        e: _DayEnv,
        presence: np.ndarray,
        asleep: np.ndarray,
        comps: dict[str, np.ndarray],
        part: _Part,
    ) -> None:
        """Indoor temperature, humidity, CO2 and air quality sampled every ``env_freq`` minutes."""
        g = e.grid
        fe = self.env_freq
        idx = np.arange(0, g.n_minutes, fe)
        nb = hi - lo
        r = p.region
        t_out = e.temp[r][:, idx]
        t_lag = e.temp_lag[r][:, idx]
        pres = presence[:, idx]
        slp = asleep[:, idx]
        cool = comps["cooling"][:, idx]
        cook = comps["cooking"][:, idx]
        noise = _uniform_block(self.fleet.seed, 5, d, lo, hi, 3 * idx.size).reshape(nb, 3, idx.size)

        t_free = 21.0 + 0.42 * (t_lag - 15.0) + 0.8 * pres
        # Korean homes are heated (ondol); empty homes are kept cooler
        heat_target = np.where((pres + slp) > 0, p.heat_sp[:, None] - 1.5 * slp, 17.0)
        t_in = np.maximum(t_free, heat_target)
        ac_on = cool > 100.0
        cooled = p.ac_sp[:, None] + 0.8 + 0.1 * (t_out - p.ac_sp[:, None])
        t_in = np.where(ac_on, np.minimum(t_in, cooled), t_in)
        t_in = np.round(_moving_mean(t_in, max(1, 30 // fe)) + 0.3 * (noise[:, 0] - 0.5), 1)

        rh_out = e.humidity[r][:, idx]
        rh = 45.0 + 0.4 * (rh_out - 60.0) - 8.0 * (t_lag < 10.0) - 7.0 * ac_on + 8.0 * (cook > 500.0)
        rh = np.round(np.clip(rh + 3.0 * (noise[:, 1] - 0.5), 20.0, 85.0), 1)

        vent = np.where(t_out < 5.0, 1.6, np.where(t_out > 27.0, 1.1, 0.75)) * p.vent[:, None]
        people = p.residents[:, None] * (pres + 1.3 * slp)
        co2 = 420.0 + people * 380.0 * vent * (70.0 / p.area)[:, None]
        co2 = _moving_mean(co2, max(1, 45 // fe)) + 15.0 * (noise[:, 2] - 0.5)
        co2 = np.round(np.clip(co2, 400.0, 4000.0))

        aqi = 0.55 * e.aqi[r][:, None] + 40.0 * (cook > 500.0) + 4.0 * (noise[:, 1] - 0.5)
        aqi = np.round(np.clip(aqi, 0.0, 500.0))

        ts = g.start_ms + idx.astype(np.int64) * 60_000
        part.add(
            np.repeat(np.arange(lo, hi), idx.size),
            ts=np.tile(ts, nb),
            temperature_c=t_in.ravel(),
            humidity_pct=rh.ravel(),
            co2_ppm=co2.ravel(),
            air_quality_index=aqi.ravel(),
        )

    # ------------------------------------------------------------------ frames
    def _readings(self, d: date, parts: dict[str, _Part], last_day: bool) -> pl.DataFrame:
        keys = ["meter", "pv", "env", "fridge", "washer"]
        if last_day:
            keys += ["boundary_m", "boundary_f", "boundary_w"]
        frames = []
        for key in keys:
            dtype, ids = self.id_frames[key]
            part = parts[key]
            for i, hh in enumerate(part.hh):  # one frame per block: no copies, just more chunks
                if hh.size == 0:
                    continue
                cols = {k: v[i] for k, v in part.cols.items()}
                n = hh.size
                named = ids.select(pl.all().gather(pl.Series(hh, dtype=pl.UInt32)))  # both columns at once
                null = pl.repeat(None, n, dtype=pl.Float64, eager=True)
                series = [
                    pl.Series("ts", cols.pop("ts")).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
                    named["household_id"],
                    named["device_id"],
                    pl.repeat(dtype.value, n, dtype=pl.String, eager=True).alias("device_type"),
                    *[pl.Series(k, cols[k]) if k in cols else null.alias(k) for k in READING_FIELDS],
                ]
                frames.append(pl.DataFrame(series))
        if not frames:
            return empty_readings()
        return pl.concat(frames, rechunk=False)

    def _truth_frame(self, d: date, b0: int, b1: int, parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
        cat = {k: np.concatenate([t[k] for t in parts]) for k in parts[0]}
        return pl.DataFrame(
            {
                "household_id": self.ids.gather(pl.Series(cat["hh"], dtype=pl.UInt32)),
                "date": pl.Series([d], dtype=pl.Date).new_from_index(0, b1 - b0),
                "import_kwh": cat["import"],
                "export_kwh": cat["export"],
                "load_kwh": cat["load"],
                "pv_kwh": cat["pv"],
                "import_off_peak_kwh": cat["off"],
                "import_mid_kwh": cat["mid"],
                "import_peak_kwh": cat["peak"],
            },
            schema=TRUTH_SCHEMA,
        )

    def _appliance_frame(self, d: date, b0: int, b1: int, parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
        cat = {k: np.concatenate([t[k] for t in parts]) for k in parts[0]}
        return pl.DataFrame(
            {
                "household_id": self.ids.gather(pl.Series(cat["hh"], dtype=pl.UInt32)),
                "date": pl.Series([d], dtype=pl.Date).new_from_index(0, b1 - b0),
                **{f"{a}_kwh": cat[a] for a in APPLIANCES},
            }
        )

    def _weather_frame(self, d: date) -> pl.DataFrame:
        e = self.env(d)
        g = e.grid
        idx = np.flatnonzero(g.clock % 60 == 0)
        ts = g.start_ms + idx.astype(np.int64) * 60_000
        regs = np.array(self.regions, dtype=np.int64)
        n = idx.size
        return pl.DataFrame(
            {
                "ts": pl.Series(np.tile(ts, regs.size)).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
                "region": np.repeat(np.array(REGION_NAMES, dtype=object)[regs], n).tolist(),
                "temperature": np.round(e.temp[regs][:, idx], 2).ravel(),
                "cloud_cover": np.round(e.cloud[regs][:, idx], 3).ravel(),
                "humidity": np.round(e.humidity[regs][:, idx], 1).ravel(),
            }
        )


def _spill(beh: Behavior, n_minutes: int) -> dict[str, np.ndarray]:
    out = {k: v[:, n_minutes:].copy() for k, v in beh.power.items()}
    out["presence"] = beh.presence[:, n_minutes:].copy()
    out["asleep"] = beh.asleep[:, n_minutes:].copy()
    return out


def _uniform_block(seed: int, stream: int, d: date, lo: int, hi: int, per_household: int) -> np.ndarray:
    """Uniforms for households lo..hi of a day, identical however households are batched.

    PCG64 yields one 64-bit output per double, so advancing by ``lo * per_household`` lands exactly
    where a draw for the whole fleet would have reached household ``lo``.
    """
    bitgen = np.random.PCG64(np.random.SeedSequence([seed, stream, d.toordinal()]))
    bitgen.advance(lo * per_household)
    return np.random.Generator(bitgen).random((hi - lo, per_household))


def _registers(start: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Register value at the start of each interval: start + energy of all earlier intervals."""
    return start[:, None] + np.cumsum(units, axis=1) - units


def _square(
    offset: np.ndarray, period: np.ndarray, on_minutes: np.ndarray | float, j: np.ndarray
) -> np.ndarray:
    """1.0 for the first ``on_minutes`` of every ``period`` minutes of an absolute-minute cycle.

    ``offset`` is the absolute minute (+ phase) of the day's first minute; reducing it modulo the
    period first keeps numbers small, and sampling mid-minute keeps floor() away from integers.
    """
    start = (offset % period).astype(np.float64)
    x = (start[:, None] + j + 0.5) * (1.0 / period)[:, None]
    frac = x - np.floor(x)
    return (frac < (np.asarray(on_minutes) / period)[:, None]).astype(np.float64)


def _moving_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Trailing moving average along axis 1 (the first samples average what exists so far)."""
    if w <= 1:
        return a
    c = np.cumsum(a, axis=1)
    out = np.empty_like(a)
    out[:, :w] = c[:, :w] / np.arange(1, min(w, a.shape[1]) + 1)
    out[:, w:] = (c[:, w:] - c[:, :-w]) / w
    return out


__all__ = ["APPLIANCES", "TRUTH_SCHEMA", "DayChunk", "SimState", "Simulation", "simulate", "simulate_days"]
