"""Turn a fleet into canonical readings, daily ground truth and weather, one local day at a time.

Register convention (the warehouse and the end-to-end test rely on it): minute ``i`` of a day
covers ``[ts_i, ts_i + 1 min)`` and carries energy ``power_i / 60000`` kWh; the register reported
at ``ts_i`` counts everything strictly before ``ts_i``.  A run of D days emits D·1440/freq
intervals per device and one extra boundary reading of every register at the local midnight after
the last day, so each day's total is ``R(next midnight) − R(midnight)``.

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

from hems.contracts import DeviceType, conform_readings, empty_readings
from ingest.simulator.behavior import (
    BEHAVIOR_COMPONENTS,
    CLOCK_WIDTH,
    SPILL,
    Behavior,
    DayDraws,
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
    "standby", "refrigerator", "lighting", "cooking", "entertainment", "laundry", "dishwasher",
    "cooling", "heating", "ev", "other",
)
#: power factor of each load: resistive ≈ 1, motors lower, switch-mode standby lowest
_PF = {
    "standby": 0.60, "refrigerator": 0.80, "kimchi": 0.80, "other_base": 0.90, "lighting": 0.92,
    "cooking": 0.99, "entertainment": 0.93, "washer": 0.75, "dryer": 0.90, "dishwasher": 0.97,
    "cooling": 0.95, "heating": 0.97, "ev": 0.99, "other": 0.88,
}
_W_PER_UNIT = 60000.0 / UNITS_PER_KWH  # watts of one quantum per minute
_BLOCK = 128  # households per internal block: bounds intermediate arrays (~2 MB each)
_TRUTH_SCHEMA = {
    "household_id": pl.String(), "date": pl.Date(), "import_kwh": pl.Float64(),
    "export_kwh": pl.Float64(), "load_kwh": pl.Float64(), "pv_kwh": pl.Float64(),
    "import_off_peak_kwh": pl.Float64(), "import_mid_kwh": pl.Float64(), "import_peak_kwh": pl.Float64(),
}


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

        return cls(start, fleet.seed, fleet.timezone, fleet.n_households, units(p.meter_import0),
                   units(p.meter_export0), units(p.fridge_plug0), units(p.washer_plug0))

    def copy(self, next_date: date | None = None) -> SimState:
        return SimState(next_date or self.next_date, self.seed, self.timezone, self.n_households,
                        self.meter_import.copy(), self.meter_export.copy(), self.fridge_plug.copy(),
                        self.washer_plug.copy())

    def registers(self, fleet: Fleet) -> pl.DataFrame:
        """Register values (kWh) per household at local midnight of ``next_date``."""
        q = 1.0 / UNITS_PER_KWH
        return pl.DataFrame({
            "household_id": fleet.household_ids,
            "meter_import_kwh": self.meter_import * q,
            "meter_export_kwh": self.meter_export * q,
            "fridge_plug_kwh": self.fridge_plug * q,
            "washer_plug_kwh": self.washer_plug * q,
        })


@dataclass(frozen=True, eq=False)
class DayChunk:
    """One local day (or one household batch of it).

    ``readings`` are canonical readings ordered by device type, household and time; the chunk of
    the last day also holds the boundary register readings at the following midnight.  ``state``
    continues the run (set on the chunk that completes a day, None on earlier batches of it).
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


def _validate(fleet: Fleet, start: date | None, days: int, freq_minutes: int, env_freq_minutes: int,
              state: SimState | None, batch_households: int | None) -> date:
    if not isinstance(fleet, Fleet):
        raise ValueError(f"fleet must be a Fleet (use Fleet.generate), got {type(fleet).__name__}")
    for name, value in (("days", days), ("freq_minutes", freq_minutes), ("env_freq_minutes", env_freq_minutes)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    for name, value in (("freq_minutes", freq_minutes), ("env_freq_minutes", env_freq_minutes)):
        if value <= 0 or 60 % value:
            raise ValueError(f"{name} must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), got {value}")
    if batch_households is not None and (isinstance(batch_households, bool) or batch_households <= 0):
        raise ValueError(f"batch_households must be a positive integer or None, got {batch_households!r}")
    if start is not None and (isinstance(start, datetime) or not isinstance(start, date)):
        raise ValueError(f"start must be a datetime.date (a local calendar day), got {start!r}")
    if state is not None:
        if (state.seed, state.timezone, state.n_households) != (fleet.seed, fleet.timezone, fleet.n_households):
            raise ValueError("state belongs to a different fleet (seed, timezone or size differ)")
        if start is not None and start != state.next_date:
            raise ValueError(f"start {start} does not continue the state, which ends before {state.next_date}")
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
    return _Run(fleet, first, int(days), int(freq_minutes), int(env_freq_minutes), state,
                batch_households, progress).chunks()


def simulate(fleet: Fleet, start: date | None = None, days: int = 1, freq_minutes: int = 1,
             **kwargs) -> Simulation:  # noqa: ANN003 - forwarded to simulate_days
    """Run :func:`simulate_days` and concatenate its chunks."""
    chunks = list(simulate_days(fleet, start, days, freq_minutes, **kwargs))
    weather = pl.concat([c.weather for c in chunks]).unique(["ts", "region"], keep="first", maintain_order=True)
    return Simulation(
        readings=pl.concat([c.readings for c in chunks]),
        truth=pl.concat([c.truth for c in chunks]),
        weather=weather,
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
    def __init__(self, fleet: Fleet, first: date, days: int, freq: int, env_freq: int, state: SimState,
                 batch: int | None, progress: Callable[[int, int], None] | None) -> None:
        self.fleet, self.first, self.days, self.freq = fleet, first, days, freq
        self.env_freq = max(env_freq, freq)
        self.state = state.copy()  # registers advance in place; never touch the caller's state
        self.batch = batch or fleet.n_households
        self.progress = progress
        self.tz = fleet.timezone
        self.p = fleet.params
        self.n = fleet.n_households
        self.dw: DailyWeather = daily_weather(fleet.seed, first - timedelta(days=3), first + timedelta(days=days + 4))
        self.envs: dict[date, _DayEnv] = {}
        self.spill: dict[tuple[date, int], dict[str, np.ndarray]] = {}
        ids = fleet.households["household_id"]
        self.ids = {
            "hh": ids,
            DeviceType.smart_meter: ids + "-meter",
            DeviceType.solar_inverter: ids + "-pv",
            DeviceType.env_sensor: ids + "-env",
            "fridge": ids + "-plug-fridge",
            "washer": ids + "-plug-washer",
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
        tou = np.stack([(hour >= 22) | (hour < 8), (hour >= 8) & (hour < 16), (hour >= 16) & (hour < 22)], axis=1)
        h = grid.clock / 60.0
        v_profile = -1.5 * np.exp(-(((h - 20.5) / 2.5) ** 2)) + 1.0 * np.exp(-(((h - 3.5) / 3.0) ** 2))
        return _DayEnv(
            grid=grid, window_clock=clock, temp=mw.temperature, temp_lag=lag, cloud=mw.cloud,
            humidity=mw.humidity, daylight=daylight, cosz=cosz, decl=decl, hour_angle=ha,
            t_max=mw.temperature[:, own].max(axis=1), t_mean=self.dw.temp_mean[row],
            aqi=self.dw.aqi[row], draws=day_draws(self.fleet.seed, d, self.n),
            tou=tou.astype(np.float64), v_profile=v_profile,
        )

    # ------------------------------------------------------------------ behaviour days
    def behavior(self, d: date, lo: int, hi: int) -> Behavior:
        e = self.env(d)
        p = self.p.take(slice(lo, hi))
        r = p.region
        width = e.window_clock.size
        noise = _uniform_block(self.fleet.seed, 3, d, lo, hi, width)
        return render_behavior(
            p, e.draws.take(slice(lo, hi)), e.grid, e.window_clock, e.temp[r], e.temp_lag[r],
            e.daylight[r], e.t_max[r], noise,
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

    def _chunk(self, d: date, b0: int, b1: int, last_day: bool, first_batch: bool,
               day_complete: bool) -> DayChunk:
        parts = {k: _Part() for k in ("meter", "pv", "env", "fridge", "washer", "boundary_m", "boundary_f",
                                      "boundary_w")}
        truth: list[dict[str, np.ndarray]] = []
        appl: list[dict[str, np.ndarray]] = []
        for lo in range(b0, b1, _BLOCK):
            hi = min(b1, lo + _BLOCK)
            prev = self.spill_of(d - timedelta(days=1), lo, hi)
            beh = self.behavior(d, lo, hi)
            self.spill[(d, lo)] = _spill(beh, self.env(d).grid.n_minutes)
            t, a = self._own_day(d, lo, hi, beh, prev, parts)
            truth.append(t)
            appl.append(a)
            if last_day:
                nxt = d + timedelta(days=1)
                self._own_day(nxt, lo, hi, None, self.spill[(d, lo)], parts, boundary=True)
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
    def _own_day(self, d: date, lo: int, hi: int, beh: Behavior | None, prev: dict[str, np.ndarray],
                 parts: dict[str, _Part], boundary: bool = False):
        e = self.env(d)
        g = e.grid
        L = g.n_minutes
        nb = hi - lo
        p = self.p.take(slice(lo, hi))
        r = p.region
        u = g.utc_minutes
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
        on_len = np.rint(p.fridge_period * duty)
        fridge = p.fridge_w[:, None] * (((u[None, :] + p.fridge_phase[:, None]) % p.fridge_period[:, None])
                                        < on_len[:, None])
        fridge = fridge + 180.0 * (((u[None, :] + p.fridge_phase[:, None] * 7) % 1440) < 20)
        k_on = np.rint(p.kimchi_period * 0.3)
        kimchi = p.kimchi_w[:, None] * (((u[None, :] + p.kimchi_phase[:, None]) % p.kimchi_period[:, None])
                                        < k_on[:, None])
        season = 1.0 + 0.02 * np.clip(15.0 - e.t_mean[r], -10.0, 20.0)  # heated bidet seats in winter
        other_base = (3.0 * p.base_other_w * season)[:, None] * (((u[None, :] + p.other_phase[:, None]) % 17) < 6)
        standby = p.standby_w[:, None]

        load = standby + fridge
        load = load + kimchi
        load = load + other_base
        for c in BEHAVIOR_COMPONENTS:
            load = load + comps[c]
        apparent = standby / _PF["standby"] + fridge / _PF["refrigerator"] + kimchi / _PF["kimchi"]
        apparent = apparent + other_base / _PF["other_base"]
        for c in BEHAVIOR_COMPONENTS:
            apparent = apparent + comps[c] / _PF[c]

        pv = np.zeros((nb, L))
        pv_rows = np.flatnonzero(p.has_pv)
        if pv_rows.size:
            rr = r[pv_rows]
            pv[pv_rows] = pv_power_w(
                e.cosz[rr, :L], e.decl[:, :L], e.hour_angle[rr, :L], p.latitude[pv_rows, None],
                p.pv_tilt[pv_rows, None], e.cloud[rr, :L], e.temp[rr, :L], p.pv_kwp[pv_rows, None],
            )

        k_load = np.rint(load * (1.0 / _W_PER_UNIT))
        k_pv = np.rint(pv * (1.0 / _W_PER_UNIT))
        k_imp = np.maximum(k_load - k_pv, 0.0)
        k_exp = np.maximum(k_pv - k_load, 0.0)

        f = self.freq
        n_int = L // f
        v_noise = _uniform_block(self.fleet.seed, 4, d, lo, hi, L)
        net_kw = (k_load - k_pv) * (_W_PER_UNIT / 1000.0)
        volts = 220.0 * (1.0 + p.v_off)[:, None] + e.v_profile[None, :] - 0.5 * net_kw + 1.2 * (v_noise - 0.5)
        volts = np.round(np.clip(volts, 213.4, 226.6), 1)

        def per_interval(a: np.ndarray) -> np.ndarray:
            return a if f == 1 else a.reshape(a.shape[0], n_int, f).sum(axis=2)

        imp_i, exp_i = per_interval(k_imp), per_interval(k_exp)
        net_i = per_interval(k_load - k_pv)
        pf = np.clip(per_interval(load) / np.maximum(per_interval(apparent), 1e-9), 0.85, 0.99)
        pf = np.round(pf, 3)
        v_i = volts[:, ::f]
        current = np.round(np.abs(net_i) * (_W_PER_UNIT / f) / (v_i * pf), 3)
        ts = g.start_ms + np.arange(n_int, dtype=np.int64) * (f * 60_000)
        hh = np.arange(lo, hi)

        st = self.state
        imp_units = imp_i.astype(np.int64)
        exp_units = exp_i.astype(np.int64)
        r_imp = st.meter_import[lo:hi, None] + np.cumsum(imp_units, axis=1) - imp_units
        r_exp = st.meter_export[lo:hi, None] + np.cumsum(exp_units, axis=1) - exp_units
        q = 1.0 / UNITS_PER_KWH

        fr_units = per_interval(np.rint(fridge * (1.0 / _W_PER_UNIT))).astype(np.int64)
        wa_units = per_interval(np.rint(comps["washer"] * (1.0 / _W_PER_UNIT))).astype(np.int64)
        r_fr = st.fridge_plug[lo:hi, None] + np.cumsum(fr_units, axis=1) - fr_units
        r_wa = st.washer_plug[lo:hi, None] + np.cumsum(wa_units, axis=1) - wa_units
        fp = np.flatnonzero(p.has_fridge_plug)
        wp = np.flatnonzero(p.has_washer_plug)

        if boundary:  # only the readings at the first timestamp, registers unchanged
            m = parts["boundary_m"]
            m.add(hh, ts=ts[:1].repeat(nb), power_w=imp_i[:, 0] * (_W_PER_UNIT / f),
                  energy_import_kwh=r_imp[:, 0] * q, energy_export_kwh=r_exp[:, 0] * q,
                  voltage_v=v_i[:, 0], current_a=current[:, 0], power_factor=pf[:, 0])
            parts["boundary_f"].add(hh[fp], ts=ts[:1].repeat(fp.size), power_w=fr_units[fp, 0] * (_W_PER_UNIT / f),
                                    energy_import_kwh=r_fr[fp, 0] * q)
            parts["boundary_w"].add(hh[wp], ts=ts[:1].repeat(wp.size), power_w=wa_units[wp, 0] * (_W_PER_UNIT / f),
                                    energy_import_kwh=r_wa[wp, 0] * q)
            return None, None

        parts["meter"].add(
            np.repeat(hh, n_int), ts=np.tile(ts, nb), power_w=(imp_i * (_W_PER_UNIT / f)).ravel(),
            energy_import_kwh=(r_imp * q).ravel(), energy_export_kwh=(r_exp * q).ravel(),
            voltage_v=v_i.ravel(), current_a=current.ravel(), power_factor=pf.ravel(),
        )
        if pv_rows.size:
            pv_i = per_interval(k_pv[pv_rows])
            parts["pv"].add(np.repeat(hh[pv_rows], n_int), ts=np.tile(ts, pv_rows.size),
                            solar_power_w=(pv_i * (_W_PER_UNIT / f)).ravel())
        if fp.size:
            parts["fridge"].add(np.repeat(hh[fp], n_int), ts=np.tile(ts, fp.size),
                                power_w=(fr_units[fp] * (_W_PER_UNIT / f)).ravel(),
                                energy_import_kwh=(r_fr[fp] * q).ravel())
        if wp.size:
            parts["washer"].add(np.repeat(hh[wp], n_int), ts=np.tile(ts, wp.size),
                                power_w=(wa_units[wp] * (_W_PER_UNIT / f)).ravel(),
                                energy_import_kwh=(r_wa[wp] * q).ravel())
        self._env_readings(d, lo, hi, p, e, presence, asleep, comps, parts["env"])

        # advance registers
        st.meter_import[lo:hi] += imp_units.sum(axis=1)
        st.meter_export[lo:hi] += exp_units.sum(axis=1)
        st.fridge_plug[lo:hi] += fr_units.sum(axis=1)
        st.washer_plug[lo:hi] += wa_units.sum(axis=1)

        tou = k_imp @ e.tou
        truth = {
            "hh": hh, "import": k_imp.sum(axis=1) * q, "export": k_exp.sum(axis=1) * q,
            "load": k_load.sum(axis=1) * q, "pv": k_pv.sum(axis=1) * q,
            "off": tou[:, 0] * q, "mid": tou[:, 1] * q, "peak": tou[:, 2] * q,
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

    def _env_readings(self, d: date, lo: int, hi: int, p: HouseholdParams, e: _DayEnv, presence: np.ndarray,
                      asleep: np.ndarray, comps: dict[str, np.ndarray], part: _Part) -> None:
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
        t_in = np.where(ac_on, np.minimum(t_in, p.ac_sp[:, None] + 0.8 + 0.1 * (t_out - p.ac_sp[:, None])), t_in)
        t_in = np.round(_moving_mean(t_in, max(1, 30 // fe)) + 0.3 * (noise[:, 0] - 0.5), 1)

        rh_out = e.humidity[r][:, idx]
        rh = 45.0 + 0.4 * (rh_out - 60.0) - 8.0 * (t_lag < 10.0) - 7.0 * ac_on + 8.0 * (cook > 500.0)
        rh = np.round(np.clip(rh + 3.0 * (noise[:, 1] - 0.5), 20.0, 85.0), 1)

        vent = np.where(t_out < 5.0, 1.6, np.where(t_out > 27.0, 1.1, 0.75)) * p.vent[:, None]
        people = p.residents[:, None] * (pres + 1.3 * slp)
        co2 = 420.0 + people * 380.0 * vent * (70.0 / p.area)[:, None]
        co2 = np.round(np.clip(_moving_mean(co2, max(1, 45 // fe)) + 15.0 * (noise[:, 2] - 0.5), 400.0, 4000.0))

        aqi = 0.55 * e.aqi[r][:, None] + 40.0 * (cook > 500.0) + 4.0 * (noise[:, 1] - 0.5)
        aqi = np.round(np.clip(aqi, 0.0, 500.0))

        ts = g.start_ms + idx.astype(np.int64) * 60_000
        part.add(np.repeat(np.arange(lo, hi), idx.size), ts=np.tile(ts, nb), temperature_c=t_in.ravel(),
                 humidity_pct=rh.ravel(), co2_ppm=co2.ravel(), air_quality_index=aqi.ravel())

    # ------------------------------------------------------------------ frames
    def _readings(self, d: date, parts: dict[str, _Part], last_day: bool) -> pl.DataFrame:
        spec = [
            ("meter", DeviceType.smart_meter, self.ids[DeviceType.smart_meter]),
            ("pv", DeviceType.solar_inverter, self.ids[DeviceType.solar_inverter]),
            ("env", DeviceType.env_sensor, self.ids[DeviceType.env_sensor]),
            ("fridge", DeviceType.smart_plug, self.ids["fridge"]),
            ("washer", DeviceType.smart_plug, self.ids["washer"]),
        ]
        if last_day:
            spec += [
                ("boundary_m", DeviceType.smart_meter, self.ids[DeviceType.smart_meter]),
                ("boundary_f", DeviceType.smart_plug, self.ids["fridge"]),
                ("boundary_w", DeviceType.smart_plug, self.ids["washer"]),
            ]
        frames = []
        for key, dtype, dev_ids in spec:
            part = parts[key]
            if not part.hh:
                continue
            hh = pl.Series(np.concatenate(part.hh), dtype=pl.UInt32)
            if hh.len() == 0:
                continue
            cols = {k: np.concatenate(v) for k, v in part.cols.items()}
            ts = pl.Series("ts", cols.pop("ts")).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
            frame = pl.DataFrame([
                ts,
                self.ids["hh"].gather(hh).alias("household_id"),
                dev_ids.gather(hh).alias("device_id"),
                pl.Series("device_type", [dtype.value], dtype=pl.String).new_from_index(0, hh.len()),
                *[pl.Series(k, v) for k, v in cols.items()],
            ])
            frames.append(conform_readings(frame))
        if not frames:
            return empty_readings()
        return pl.concat(frames, rechunk=False)

    def _truth_frame(self, d: date, b0: int, b1: int, parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
        cat = {k: np.concatenate([t[k] for t in parts]) for k in parts[0]}
        return pl.DataFrame({
            "household_id": self.ids["hh"].gather(pl.Series(cat["hh"], dtype=pl.UInt32)),
            "date": pl.Series([d], dtype=pl.Date).new_from_index(0, b1 - b0),
            "import_kwh": cat["import"], "export_kwh": cat["export"], "load_kwh": cat["load"],
            "pv_kwh": cat["pv"], "import_off_peak_kwh": cat["off"], "import_mid_kwh": cat["mid"],
            "import_peak_kwh": cat["peak"],
        }, schema=_TRUTH_SCHEMA)

    def _appliance_frame(self, d: date, b0: int, b1: int, parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
        cat = {k: np.concatenate([t[k] for t in parts]) for k in parts[0]}
        return pl.DataFrame({
            "household_id": self.ids["hh"].gather(pl.Series(cat["hh"], dtype=pl.UInt32)),
            "date": pl.Series([d], dtype=pl.Date).new_from_index(0, b1 - b0),
            **{f"{a}_kwh": cat[a] for a in APPLIANCES},
        })

    def _weather_frame(self, d: date) -> pl.DataFrame:
        e = self.env(d)
        g = e.grid
        idx = np.flatnonzero(g.clock % 60 == 0)
        ts = g.start_ms + idx.astype(np.int64) * 60_000
        regs = np.array(self.regions, dtype=np.int64)
        n = idx.size
        return pl.DataFrame({
            "ts": pl.Series(np.tile(ts, regs.size)).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            "region": np.repeat(np.array(REGION_NAMES, dtype=object)[regs], n).tolist(),
            "temperature": np.round(e.temp[regs][:, idx], 2).ravel(),
            "cloud_cover": np.round(e.cloud[regs][:, idx], 3).ravel(),
            "humidity": np.round(e.humidity[regs][:, idx], 1).ravel(),
        })


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


def _moving_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Trailing moving average along axis 1 (the first samples average what exists so far)."""
    if w <= 1:
        return a
    c = np.cumsum(a, axis=1)
    out = np.empty_like(a)
    out[:, :w] = c[:, :w] / np.arange(1, min(w, a.shape[1]) + 1)
    out[:, w:] = (c[:, w:] - c[:, :-w]) / w
    return out


__all__ = ["APPLIANCES", "CLOCK_WIDTH", "DayChunk", "SimState", "Simulation", "simulate", "simulate_days"]
