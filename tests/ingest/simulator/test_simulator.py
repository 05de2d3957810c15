"""The household simulator: reproducibility, the register convention, and realistic totals/shapes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hems.contracts import READING_SCHEMA, WEATHER
from ingest.simulator import APPLIANCES, Fleet, SimState, simulate, simulate_days
from ingest.simulator.calendar import day_grid, is_day_off
from ingest.simulator.weather import daily_weather, minute_weather

SEOUL = "Asia/Seoul"
KEY = ["device_id", "ts"]


def meters(readings: pl.DataFrame) -> pl.DataFrame:
    return readings.filter(pl.col("device_type") == "smart_meter").sort(KEY)


def local(frame: pl.DataFrame, tz: str = SEOUL) -> pl.DataFrame:
    return frame.with_columns(local=pl.col("ts").dt.convert_time_zone(tz))


# --------------------------------------------------------------------------- shared runs
@pytest.fixture(scope="module")
def minute_run():
    """Three days at one-minute resolution, PV homes included (seed chosen to have some)."""
    fleet = Fleet.generate(12, seed=18, timezone=SEOUL)
    assert fleet.households["has_pv"].sum() >= 2 and fleet.households["has_ev"].sum() >= 1
    return fleet, simulate(fleet, date(2025, 6, 20), 3)


@pytest.fixture(scope="module")
def summer():
    fleet = Fleet.generate(50, seed=42, timezone=SEOUL)
    return fleet, simulate(fleet, date(2025, 7, 1), 62, freq_minutes=15, env_freq_minutes=60)


@pytest.fixture(scope="module")
def spring():
    fleet = Fleet.generate(50, seed=42, timezone=SEOUL)
    return fleet, simulate(fleet, date(2025, 4, 1), 30, freq_minutes=15, env_freq_minutes=60)


# --------------------------------------------------------------------------- fleet
def test_fleet_attributes_are_reproducible_and_plausible():
    a = Fleet.generate(200, seed=7)
    b = Fleet.generate(200, seed=7)
    assert_frame_equal(a.households, b.households)
    assert_frame_equal(a.devices, b.devices)
    assert not a.households.equals(Fleet.generate(200, seed=8).households)
    hh = a.households
    assert hh.columns == [
        "household_id",
        "household_type",
        "building_type",
        "area_m2",
        "residents",
        "region",
        "latitude",
        "has_pv",
        "pv_kwp",
        "has_ev",
        "electric_heating",
        "timezone",
    ]
    assert hh["household_id"].n_unique() == 200
    assert set(hh["household_type"]) == {"single", "couple", "family", "elderly"}
    assert set(hh["building_type"]) == {"apartment", "detached"}
    assert hh["residents"].min() >= 1 and hh["latitude"].is_between(33.0, 38.5).all()
    pv = hh.filter("has_pv")
    assert pv["pv_kwp"].is_between(3.0, 5.0).all() and (hh.filter(~pl.col("has_pv"))["pv_kwp"] == 0).all()
    # PV mostly on detached houses, EVs and electric heating a minority
    assert pv.filter(pl.col("building_type") == "detached").height > pv.height / 2
    assert 0.0 < hh["has_ev"].mean() < 0.12
    assert 0.07 < hh["electric_heating"].mean() < 0.25
    singles = hh.filter(pl.col("household_type") == "single")
    families = hh.filter(pl.col("household_type") == "family")
    assert (singles["residents"] == 1).all() and families["residents"].min() >= 3
    assert singles["area_m2"].mean() < families["area_m2"].mean()
    # one meter and one environment sensor per household, an inverter per PV home
    types = a.devices.group_by("device_type").len()
    counts = dict(types.iter_rows())
    assert counts["smart_meter"] == counts["env_sensor"] == 200
    assert counts["solar_inverter"] == pv.height


# --------------------------------------------------------------------------- contract and registers
def test_readings_follow_the_canonical_contract(minute_run):
    fleet, sim = minute_run
    r = sim.readings
    assert r.schema == pl.Schema(READING_SCHEMA)
    assert set(r["device_type"]) == {"smart_meter", "smart_plug", "solar_inverter", "env_sensor"}
    assert set(r["device_id"]) <= set(fleet.devices["device_id"])
    m = meters(r)
    hh = fleet.households["household_id"].to_list()
    assert set(m["device_id"]) == {f"{h}-meter" for h in hh}
    # D days at one minute: D*1440 intervals and a final boundary reading at the next midnight
    assert m.group_by("device_id").len()["len"].to_list() == [3 * 1440 + 1] * len(hh)
    first = datetime(2025, 6, 20, tzinfo=UTC) - timedelta(hours=9)
    assert m["ts"].min() == first and m["ts"].max() == first + timedelta(days=3)
    assert m["power_w"].min() >= 0
    assert m["voltage_v"].is_between(220 * 0.97, 220 * 1.03).all()
    assert m["power_factor"].is_between(0.85, 0.99).all()
    expected_current = m["power_w"] / (m["voltage_v"] * m["power_factor"])
    importing = m.filter(pl.col("power_w") > 0)
    assert np.allclose(
        importing["current_a"],
        (importing["power_w"] / (importing["voltage_v"] * importing["power_factor"])),
        atol=2e-3,
    )
    assert expected_current.len() == m.height
    env = r.filter(pl.col("device_type") == "env_sensor")
    assert env.group_by("device_id").len()["len"].to_list() == [3 * 288] * len(hh)  # every 5 minutes
    assert env["co2_ppm"].min() >= 400 and env["temperature_c"].is_between(10, 35).all()
    assert env["humidity_pct"].is_between(20, 85).all() and env["air_quality_index"].is_between(0, 500).all()
    assert m["temperature_c"].is_null().all() and env["power_w"].is_null().all()


def test_registers_are_monotonic_and_match_the_truth_exactly(minute_run):
    fleet, sim = minute_run
    r = sim.readings.filter(pl.col("energy_import_kwh").is_not_null()).sort(KEY)
    steps = r.with_columns(
        d_imp=pl.col("energy_import_kwh").diff().over("device_id"),
        d_exp=pl.col("energy_export_kwh").diff().over("device_id"),
    )
    assert steps["d_imp"].min() >= 0 and steps["d_exp"].drop_nulls().min() >= 0
    # initial registers are random per household, never zero
    starts = meters(r).group_by("device_id").agg(pl.col("energy_import_kwh").first())
    assert starts["energy_import_kwh"].min() > 500 and starts["energy_import_kwh"].n_unique() == starts.height

    m = local(meters(sim.readings))
    midnights = m.filter((pl.col("local").dt.hour() == 0) & (pl.col("local").dt.minute() == 0))
    daily = (
        midnights.sort(KEY)
        .with_columns(
            date=(pl.col("local").dt.date() - pl.duration(days=1)),
            d_imp=pl.col("energy_import_kwh").diff().over("device_id"),
            d_exp=pl.col("energy_export_kwh").diff().over("device_id"),
        )
        .drop_nulls("d_imp")
    )
    joined = daily.join(sim.truth, on=["household_id", "date"], how="inner", validate="1:1")
    assert joined.height == sim.truth.height == 3 * fleet.n_households
    assert (joined["d_imp"] - joined["import_kwh"]).abs().max() <= 1e-9
    assert (joined["d_exp"] - joined["export_kwh"]).abs().max() <= 1e-9

    # power_w of minute i carries exactly that minute's energy
    energy = (
        m.filter(pl.col("ts") < pl.col("ts").max())
        .group_by("household_id", pl.col("local").dt.date().alias("date"))
        .agg((pl.col("power_w").sum() / 60000).alias("e"))
    )
    check = energy.join(sim.truth, on=["household_id", "date"])
    assert ((check["e"] - check["import_kwh"]).abs() / check["import_kwh"].clip(1e-3)).max() < 1e-9

    t = sim.truth
    bands = t["import_off_peak_kwh"] + t["import_mid_kwh"] + t["import_peak_kwh"]
    assert (bands - t["import_kwh"]).abs().max() <= 1e-9
    assert ((t["import_kwh"] - t["export_kwh"]) - (t["load_kwh"] - t["pv_kwh"])).abs().max() <= 1e-9
    assert (t["import_kwh"] <= t["load_kwh"] + 1e-9).all()


def test_truth_tou_bands_follow_local_hours():
    fleet = Fleet.generate(4, seed=9)
    sim = simulate(fleet, date(2025, 2, 3), 1)
    m = local(meters(sim.readings)).filter(pl.col("ts") < pl.col("ts").max())
    h = pl.col("local").dt.hour()
    band = pl.when((h >= 22) | (h < 8)).then(pl.lit("off")).when(h < 16).then(pl.lit("mid"))
    band = band.otherwise(pl.lit("peak"))
    by = m.group_by("household_id", band.alias("band")).agg((pl.col("power_w").sum() / 60000).alias("kwh"))
    wide = by.pivot("band", index="household_id", values="kwh").join(sim.truth, on="household_id")
    for name in ("off_peak", "mid", "peak"):
        assert np.allclose(wide[name.split("_")[0]], wide[f"import_{name}_kwh"], rtol=1e-9, atol=1e-12)


def test_pv_is_zero_at_night_and_exports_only_from_pv_homes(minute_run):
    fleet, sim = minute_run
    pv = local(sim.readings.filter(pl.col("device_type") == "solar_inverter"))
    assert pv.height > 0 and pv["solar_power_w"].min() >= 0
    night = pv.filter((pl.col("local").dt.hour() >= 21) | (pl.col("local").dt.hour() < 4))
    assert (night["solar_power_w"] == 0).all()
    noon = pv.filter(pl.col("local").dt.hour().is_between(11, 13))
    assert noon["solar_power_w"].mean() > 300
    pv_homes = set(fleet.households.filter("has_pv")["household_id"])
    t = sim.truth
    assert (t.filter(~pl.col("household_id").is_in(pv_homes))["export_kwh"] == 0).all()
    assert t.filter(pl.col("household_id").is_in(pv_homes))["pv_kwh"].min() > 1.0
    # export register only moves at daytime
    m = local(meters(sim.readings)).filter(pl.col("household_id").is_in(pv_homes))
    moves = m.with_columns(dx=pl.col("energy_export_kwh").diff().over("device_id")).filter(pl.col("dx") > 0)
    assert moves.height > 0 and moves["local"].dt.hour().is_between(5, 19).all()


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_same_output_and_different_seed_differs():
    a = simulate(Fleet.generate(6, seed=21), date(2025, 1, 10), 2, freq_minutes=5)
    b = simulate(Fleet.generate(6, seed=21), date(2025, 1, 10), 2, freq_minutes=5)
    assert_frame_equal(a.readings, b.readings)
    assert_frame_equal(a.truth, b.truth)
    assert_frame_equal(a.weather, b.weather)
    c = simulate(Fleet.generate(6, seed=22), date(2025, 1, 10), 2, freq_minutes=5)
    assert not a.truth["load_kwh"].equals(c.truth["load_kwh"])


def test_chunking_and_batching_do_not_change_results():
    fleet = Fleet.generate(20, seed=5)
    whole = simulate(fleet, date(2025, 3, 28), 6, freq_minutes=5)
    first = simulate(fleet, date(2025, 3, 28), 3, freq_minutes=5)
    saved = json.loads(json.dumps(first.state.to_dict()))  # a pipeline may persist it between runs
    second = simulate(fleet, None, 3, freq_minutes=5, state=SimState.from_dict(saved))
    assert first.state.next_date == date(2025, 3, 31)
    # the boundary reading of the first run is exactly the first reading of the second
    joined = pl.concat([first.readings, second.readings])
    assert (
        joined.height - joined.unique().height
        == first.readings.filter(pl.col("ts") == pl.col("ts").max()).height
    )
    assert_frame_equal(whole.readings.sort(KEY), joined.unique(maintain_order=True).sort(KEY))
    assert_frame_equal(whole.truth, pl.concat([first.truth, second.truth]))
    assert_frame_equal(whole.appliances, pl.concat([first.appliances, second.appliances]))
    assert np.array_equal(whole.state.meter_import, second.state.meter_import)

    batched = simulate(fleet, date(2025, 3, 28), 6, freq_minutes=5, batch_households=7)
    assert_frame_equal(whole.readings.sort(KEY), batched.readings.sort(KEY))
    assert_frame_equal(whole.truth.sort("date", "household_id"), batched.truth.sort("date", "household_id"))


def test_one_chunk_per_day_with_progress_and_state():
    fleet = Fleet.generate(5, seed=2)
    calls: list[tuple[int, int]] = []
    chunks = list(
        simulate_days(
            fleet,
            date(2025, 5, 1),
            3,
            freq_minutes=30,
            progress=lambda done, total: calls.append((done, total)),
        )
    )
    assert [c.day for c in chunks] == [date(2025, 5, 1), date(2025, 5, 2), date(2025, 5, 3)]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert [c.is_last for c in chunks] == [False, False, True]
    assert all(c.truth["date"].unique().to_list() == [c.day] for c in chunks)
    assert chunks[-1].state is not None and chunks[-1].state.next_date == date(2025, 5, 4)
    per_day = [meters(c.readings).height for c in chunks]
    assert per_day == [5 * 48, 5 * 48, 5 * 49]  # the last chunk carries the boundary reading
    assert chunks[0].weather.schema == pl.Schema(WEATHER.schema)
    assert chunks[0].weather.height == 24 * fleet.households["region"].n_unique()
    regs = chunks[-1].state.registers(fleet)
    last = meters(chunks[-1].readings).filter(pl.col("ts") == pl.col("ts").max())
    assert np.array_equal(regs["meter_import_kwh"].to_numpy(), last["energy_import_kwh"].to_numpy())


def test_dst_days_have_23_and_25_hours():
    fleet = Fleet.generate(3, seed=1, timezone="Europe/Berlin")
    sim = simulate(fleet, date(2025, 3, 29), 2, freq_minutes=15)  # 30 March: clocks go forward
    n = meters(sim.readings).group_by("device_id").len()["len"].unique().to_list()
    assert n == [(1440 + 1380) // 15 + 1]
    assert day_grid(date(2025, 10, 26), "Europe/Berlin").n_minutes == 1500
    t = sim.truth
    bands = t["import_off_peak_kwh"] + t["import_mid_kwh"] + t["import_peak_kwh"]
    assert (bands - t["import_kwh"]).abs().max() < 1e-9


# --------------------------------------------------------------------------- realism
def _monthly_kwh(truth: pl.DataFrame) -> pl.DataFrame:
    month = pl.col("date").dt.month().alias("month")
    return truth.group_by("household_id", month).agg(pl.col("load_kwh").sum())


def test_monthly_totals_land_in_the_design_ranges(summer, spring):
    fleet, sim = summer
    jul_aug = _monthly_kwh(sim.truth)
    assert set(jul_aug["month"]) == {7, 8}
    summer_avg = jul_aug["load_kwh"].mean()  # the Jul-Aug monthly average over the fleet
    assert 300 <= summer_avg <= 330, summer_avg
    _, spring_sim = spring
    april = _monthly_kwh(spring_sim.truth)["load_kwh"].mean()
    assert 200 <= april <= 280, april
    assert april < summer_avg
    by_type = (
        jul_aug.join(fleet.households.select("household_id", "household_type"), on="household_id")
        .group_by("household_type")
        .agg(pl.col("load_kwh").mean())
    )
    kwh = dict(by_type.iter_rows())
    assert kwh["single"] < summer_avg < kwh["family"]
    assert kwh["single"] < kwh["couple"] < kwh["family"]


def _hourly_profile(readings: pl.DataFrame) -> np.ndarray:
    m = local(meters(readings))
    prof = m.group_by(pl.col("local").dt.hour().alias("h")).agg(pl.col("power_w").mean()).sort("h")
    return prof["power_w"].to_numpy()


def test_evening_peak_and_morning_bump(summer, spring):
    for _, sim in (summer, spring):
        prof = _hourly_profile(sim.readings)
        assert 19 <= int(np.argmax(prof)) <= 22
    spring_prof = _hourly_profile(spring[1].readings)
    morning, afternoon, night = spring_prof[7:10].mean(), spring_prof[13:16].mean(), spring_prof[2:5].mean()
    assert morning > 1.3 * night and morning > afternoon


def test_standby_share_is_about_six_percent(summer, spring):
    appl = pl.concat([summer[1].appliances, spring[1].appliances])
    totals = appl.select(pl.col([f"{a}_kwh" for a in APPLIANCES]).sum())
    share = totals["standby_kwh"][0] / sum(totals.row(0))
    assert 0.04 <= share <= 0.09, share
    # the appliance breakdown adds up to the load (up to energy quantization)
    both = appl.join(pl.concat([summer[1].truth, spring[1].truth]), on=["household_id", "date"])
    summed = both.select(pl.sum_horizontal([f"{a}_kwh" for a in APPLIANCES])).to_series()
    assert ((summed - both["load_kwh"]).abs() < 1e-4).all()


def _cooling_days(fleet: Fleet, sim) -> pl.DataFrame:
    """Cooling kWh per household-day with the region's max temperature that day and the day before."""
    tmax = (
        local(sim.weather)
        .group_by("region", pl.col("local").dt.date().alias("date"))
        .agg(pl.col("temperature").max().alias("tmax"))
        .sort("region", "date")
        .with_columns(prev=pl.col("tmax").shift(1).over("region"))
        .with_columns(hot=pl.max_horizontal("tmax", pl.col("prev").fill_null(pl.col("tmax"))))
    )
    hh = fleet.households.select("household_id", "region")
    return sim.appliances.join(hh, on="household_id").join(tmax, on=["region", "date"])


def test_air_conditioning_only_on_hot_days(summer, spring):
    days = _cooling_days(*summer)
    spring_days = _cooling_days(*spring)
    for frame in (days, spring_days):
        cooled = frame.filter(pl.col("cooling_kwh") > 0)
        # AC (and fans) only when that day or the evening before reached the mid-20s
        assert cooled.height == 0 or cooled["hot"].min() >= 22.5
    very_hot = days.filter(pl.col("tmax") >= 30.5)
    assert very_hot.height > 0 and (very_hot["cooling_kwh"] > 0.5).mean() > 0.5
    assert spring_days["cooling_kwh"].sum() < 0.01 * days["cooling_kwh"].sum()
    assert np.corrcoef(days["tmax"], days["cooling_kwh"])[0, 1] > 0.3  # hotter days cool more


def test_days_off_look_like_weekends(spring):
    _, sim = spring
    assert is_day_off(date(2025, 10, 6))  # Chuseok
    assert is_day_off(date(2025, 4, 5)) and not is_day_off(date(2025, 4, 8))
    m = local(meters(sim.readings)).with_columns(date=pl.col("local").dt.date())
    m = m.with_columns(off=pl.col("date").map_elements(is_day_off, return_dtype=pl.Boolean))
    midday = m.filter(pl.col("local").dt.hour().is_between(11, 15))
    midday = midday.group_by("off").agg(pl.col("power_w").mean())
    vals = dict(midday.iter_rows())
    assert vals[True] > 1.15 * vals[False]


def test_regional_weather_follows_the_korean_climate():
    dw = daily_weather(3, date(2014, 12, 25), date(2025, 1, 5))
    start = datetime(2015, 1, 1, tzinfo=UTC)
    u0 = int(start.timestamp() // 60) - 9 * 60
    u = u0 + np.arange(0, 10 * 365 * 1440, 30)
    mw = minute_weather(dw, u)
    ts = (u + 9 * 60).astype("datetime64[m]").astype("datetime64[ms]")
    df = pl.DataFrame(
        {"ts": ts, "seoul": mw.temperature[0], "jeju": mw.temperature[-1], "cloud": mw.cloud[0]}
    )
    df = df.with_columns(m=pl.col("ts").dt.month(), h=pl.col("ts").dt.hour(), d=pl.col("ts").dt.date())
    monthly = dict(df.group_by("m").agg(pl.col("seoul").mean()).iter_rows())
    assert -3.5 < monthly[1] < -0.5 and 25.0 < monthly[8] < 27.0
    assert df.filter(pl.col("m") == 1)["jeju"].mean() > monthly[1] + 5
    assert df["cloud"].is_between(0, 1).all()
    hourly = df.group_by("h").agg(pl.col("seoul").mean()).sort("h")["seoul"].to_numpy()
    assert 4 <= int(np.argmin(hourly)) <= 6 and 13 <= int(np.argmax(hourly)) <= 15
    # day-to-day weather systems: daily means deviate from the seasonal curve and persist
    daily = df.group_by("d").agg(pl.col("seoul").mean()).sort("d")["seoul"].to_numpy()
    anomaly = daily - np.convolve(daily, np.ones(31) / 31, mode="same")
    lag1 = np.corrcoef(anomaly[20:-21], anomaly[21:-20])[0, 1]
    assert 1.0 < anomaly[20:-20].std() < 4.0 and lag1 > 0.5


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 0}, "days must be positive"),
        ({"days": -3}, "days must be positive"),
        ({"freq_minutes": 7}, "freq_minutes must divide 60"),
        ({"freq_minutes": 0}, "freq_minutes must divide 60"),
        ({"env_freq_minutes": 45}, "env_freq_minutes must divide 60"),
        ({"start": datetime(2025, 1, 1, tzinfo=UTC)}, "start must be a datetime.date"),
        ({"start": None}, "give start"),
        ({"batch_households": 0}, "batch_households"),
    ],
)
def test_bad_simulation_arguments_raise_clear_errors(kwargs, message):
    args = {"start": date(2025, 1, 1), "days": 1, "freq_minutes": 1} | kwargs
    fleet = Fleet.generate(2, seed=1)
    with pytest.raises(ValueError, match=message):
        simulate_days(fleet, **args)  # fails at the call, before iterating


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_households": 0}, "n_households must be positive"),
        ({"n_households": -5}, "n_households must be positive"),
        ({"n_households": 2.5}, "n_households must be an integer"),
        ({"timezone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"timezone": ""}, "unknown time zone"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_fleet_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fleet.generate(**({"n_households": 3} | kwargs))


def test_state_must_continue_the_same_fleet():
    fleet = Fleet.generate(3, seed=1)
    run = simulate(fleet, date(2025, 1, 1), 1, freq_minutes=60)
    with pytest.raises(ValueError, match="does not continue the state"):
        simulate_days(fleet, date(2025, 1, 5), 1, state=run.state)
    with pytest.raises(ValueError, match="different fleet"):
        simulate_days(Fleet.generate(3, seed=2), None, 1, state=run.state)
