"""What people do in a day: occupancy and the appliances that follow it.

Why a "behaviour day" runs past midnight: a family that goes to bed at 00:30, an EV that charges
from 23:00 to 03:00 or a dishwasher started at 23:30 belong to the evening that started them.
Each behaviour day therefore covers its own local day plus ``SPILL`` minutes of the next one, and
the next day adds that spill.  Everything a behaviour day draws is seeded by its date, so a day's
spill can be recomputed at any time and results do not depend on how a run is chunked.

Loads made of on/off events (cooking, laundry, TV, EV, ...) are rendered as integer-watt steps in
a difference array and integrated with one cumulative sum per appliance, which is exact and costs
O(events + minutes) rather than one mask per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from ingest.simulator.calendar import DayGrid
from ingest.simulator.fleet import ELDERLY, FAMILY, HouseholdParams

#: minutes of the next local day a behaviour day reaches into
SPILL = 480
#: wall-clock minute (05:00) where one behaviour day's night hands over to the next day's
SLEEP_SPLIT = 300
#: width of the wall-clock grid behaviour is rendered on (an hour of margin for DST days)
CLOCK_WIDTH = 1440 + SPILL + 60

BEHAVIOR_COMPONENTS = (
    "lighting",
    "cooking",
    "entertainment",
    "washer",
    "dryer",
    "dishwasher",
    "cooling",
    "heating",
    "ev",
    "other",
)


class Steps:
    """Constant-power intervals collected per appliance, rendered at once as a step function.

    Interval ends become +w/−w breakpoints; sorting them and repeating each running level over
    its run length builds the whole (households x minutes) array in one pass.  Watts are whole
    numbers, so the running sums are exact and every row returns to exactly zero.
    """

    def __init__(self, nb: int, width: int = CLOCK_WIDTH, earliest: int = SLEEP_SPLIT) -> None:
        self.nb, self.width, self.earliest = nb, width, earliest
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, mask: np.ndarray, start: np.ndarray, end: np.ndarray, watts: np.ndarray | float) -> None:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        s = np.clip(np.rint(start[rows]), self.earliest, self.width).astype(np.int64)
        e = np.clip(np.rint(end[rows]), self.earliest, self.width).astype(np.int64)
        w = np.rint(np.broadcast_to(watts, mask.shape)[rows])
        keep = e > s
        self.parts.append((rows[keep], s[keep], e[keep], w[keep]))

    def render(self) -> np.ndarray:
        total = self.nb * self.width
        if not self.parts:
            return np.zeros((self.nb, self.width))
        rows, s, e, w = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        pos = np.concatenate([rows * self.width + s, rows * self.width + e])
        order = np.argsort(pos)
        pos = pos[order]
        level = np.cumsum(np.concatenate([w, -w])[order])
        runs = np.diff(pos, prepend=0, append=total)
        return np.repeat(np.concatenate([[0.0], level]), runs).reshape(self.nb, self.width)


@dataclass
class DayDraws:
    """All random decisions of one behaviour day, one entry per household (fleet order)."""

    u: np.ndarray  # uniforms (rows x households)
    z: np.ndarray  # standard normals (rows x households)

    def take(self, sl: slice) -> DayDraws:
        return DayDraws(self.u[:, sl], self.z[:, sl])


def day_draws(seed: int, d: date, n: int) -> DayDraws:
    rng = np.random.default_rng([seed, 1, d.toordinal()])
    return DayDraws(rng.random((56, n)), rng.standard_normal((16, n)))


@dataclass
class Behavior:
    """Appliance power (W) and occupancy of one behaviour day on its clock window (nb x width)."""

    power: dict[str, np.ndarray]
    presence: np.ndarray  # fraction of residents awake at home, 0..1
    asleep: np.ndarray  # 1 while the household sleeps at home


def _away_probability(grid: DayGrid, p: HouseholdParams) -> np.ndarray:
    d = grid.day
    if grid.family_holiday:
        base = np.where(p.type_code == ELDERLY, 0.12, 0.35)
    elif (d.month, d.day) >= (7, 25) and (d.month, d.day) <= (8, 10):
        base = np.full(p.size, 0.07)  # summer holiday season (hyuga)
    else:
        base = np.full(p.size, 0.03 if grid.day_off else 0.01)
    return base


def render_behavior(
    p: HouseholdParams,
    dr: DayDraws,
    grid: DayGrid,
    clock: np.ndarray,
    t_out: np.ndarray,
    t_lag: np.ndarray,
    daylight: np.ndarray,
    t_max: np.ndarray,
    t_mean: np.ndarray,
    noise: np.ndarray,
) -> Behavior:
    """Render one behaviour day for a block of households.

    ``clock`` is the wall-clock minute (0..CLOCK_WIDTH) of each window minute; the weather arrays
    (outdoor temperature now and 90 minutes earlier, daylight 0..1) and ``noise`` (uniform 0..1)
    are nb x window; ``t_max``/``t_mean`` are the day's regional maximum / mean temperature.
    """
    nb = p.size
    u, z = dr.u, dr.z
    off = grid.day_off
    width = clock.size
    identity = bool(np.all(clock == np.arange(width)))  # no DST change: wall clock == minute index

    away = u[0] < _away_probability(grid, p)
    home = ~away
    workday_out = p.employed & (not off)

    wake = np.clip((p.wake_off if off else p.wake_work) + 35 * z[0], 315, 690)
    sleep = np.clip(p.sleep + (30 if off else 0) + 35 * z[1], 1230, 1590)
    sleep = np.maximum(sleep, wake + 600)
    leave = wake + 40 + 55 * u[1]
    ret = np.clip(p.return_t + 50 * z[2], leave + 240, sleep - 45)
    kids_t = np.clip(960 + 40 * z[3], leave + 60, ret)
    # outings on days off, and retirees' / homemakers' errands on weekdays
    out_p = np.where(off, 0.55, np.where(p.type_code == ELDERLY, 0.5, 0.4))
    outing = home & ~workday_out & (u[2] < out_p)
    out_start = np.where(p.type_code == ELDERLY, 600 + 60 * z[4], 780 + 100 * z[4])
    out_start = np.clip(out_start, wake + 60, sleep - 300)
    out_end = np.minimum(out_start + 90 + 240 * u[3], sleep - 60)
    back_home = np.where(workday_out, ret, wake)  # when evening activity can start

    pres = Steps(nb)
    pres.add(home, wake, sleep, 100.0)
    work_drop = np.where(p.employed, 100.0, np.where(p.type_code == FAMILY, 50.0, 0.0))
    pres.add(home & (not off) & (work_drop > 0), leave, ret, -work_drop)
    pres.add(home & workday_out & p.has_kids, kids_t, ret, 35.0)
    pres.add(outing, out_start, out_end, -100.0)
    sl = Steps(nb)
    sl.add(home, np.full(nb, SLEEP_SPLIT), wake, 1.0)
    sl.add(home, sleep, np.full(nb, 1440 + SLEEP_SPLIT), 1.0)

    # --- cooking: rice cooker, induction hob, microwave / air fryer, kettle
    cook = Steps(nb)
    at_home_noon = home & ~(workday_out) & ~(outing & (out_start < 750) & (out_end > 690))
    bf = home & (u[4] < p.breakfast_p)
    bf_t = wake + 20 + 30 * u[5]
    rice_bf = bf & (u[6] < 0.35)
    cook.add(rice_bf, bf_t, bf_t + 15, p.rice_w)
    cook.add(rice_bf, bf_t + 15, bf_t + 35, 0.3 * p.rice_w)
    cook.add(bf & (p.induction_w > 0), bf_t + 5, bf_t + 11 + 10 * u[7], p.induction_w)
    cook.add(bf & (u[8] < 0.5), bf_t, bf_t + 3, 1800.0)
    lunch = at_home_noon & (u[9] < p.lunch_p)
    lunch_t = 720 + 25 * z[5]
    cook.add(lunch & (p.induction_w > 0), lunch_t, lunch_t + 8 + 8 * u[10], 0.8 * p.induction_w)
    cook.add(lunch, lunch_t + 10, lunch_t + 14, 1100.0)
    dinner = home & (u[11] < p.dinner_p)
    dn_usual = np.where(p.type_code == FAMILY, 1110.0, 1150.0) + 40 * z[6]
    dn_t = np.minimum(np.maximum(dn_usual, np.where(workday_out, ret + 10 + 25 * u[12], 0.0)), sleep - 90)
    rice_dn = dinner & (u[13] < 0.7)
    cook.add(rice_dn, dn_t, dn_t + 20, p.rice_w)
    cook.add(rice_dn, dn_t + 20, dn_t + 40, 0.3 * p.rice_w)
    has_ind = dinner & (p.induction_w > 0)
    cook.add(has_ind, dn_t + 5, dn_t + 13 + 12 * u[14], p.induction_w)
    cook.add(has_ind & (u[15] < 0.6), dn_t + 30, dn_t + 34 + 10 * u[16], 0.6 * p.induction_w)
    cook.add(dinner & (u[17] < 0.6), dn_t + 25, dn_t + 28 + 12 * u[18], 1100.0 + 300 * u[19])
    # keep-warm: the rice cooker holds rice warm until bedtime (common in Korean homes)
    cook.add(rice_dn & p.keep_warm, dn_t + 40, sleep, 55.0)
    cook.add(rice_bf & p.keep_warm & ~rice_dn, bf_t + 35, np.minimum(bf_t + 600, sleep), 55.0)

    # --- entertainment: evening TV, daytime TV at home, PC / console
    ent = Steps(nb)
    tv = home & (u[20] < p.tv_p)
    tv_start = np.maximum(back_home + 20 * u[21], 1140 + 40 * z[7])
    ent.add(tv, tv_start, sleep - 45 * u[22], p.tv_w)
    day_tv = home & ~workday_out & (u[23] < np.where(p.type_code == ELDERLY, 0.85, 0.45))
    dtv_t = 780 + 60 * z[8]
    ent.add(day_tv, dtv_t, dtv_t + 60 + 180 * u[24], p.tv_w)
    ent.add(home & (u[25] < 0.3), wake + 5, wake + 20 + 30 * u[26], p.tv_w)
    pc = home & (u[27] < p.pc_p)
    ent.add(pc, np.maximum(back_home + 30, 1230 + 45 * z[9]), sleep - 30 * u[28], p.pc_w)

    # --- laundry: washer (~0.4 kWh, some warm washes) and heat-pump dryer
    wash_p = np.minimum(0.95, p.washes_week / 7.0 * (1.5 if off else 0.8))
    wash = home & (u[29] < wash_p)
    wash_t = np.where(workday_out, 1230 + 50 * z[10], 570 + 70 * z[10])
    wash_t = np.clip(wash_t, wake + 10, sleep - 75)
    washer = Steps(nb)
    warm = wash & (u[30] < 0.25)
    washer.add(wash, wash_t, wash_t + 8, 200.0)
    washer.add(warm, wash_t + 8, wash_t + 20, 2000.0)
    w2 = wash_t + np.where(warm, 20.0, 8.0)
    washer.add(wash, w2, w2 + 30, 420.0)
    washer.add(wash, w2 + 30, w2 + 40, 300.0)
    washer.add(wash, w2 + 40, w2 + 52, 550.0)
    dryer = Steps(nb)
    dry = wash & p.has_dryer & (u[31] < 0.75)
    dry_t = w2 + 57 + 35 * u[32]
    dryer.add(dry, dry_t, dry_t + 90 + 50 * u[33], p.dryer_w)

    # --- dishwasher after dinner (or after lunch on days off)
    dish = Steps(nb)
    dish_on = home & (u[34] < p.dish_week / 7.0 * (1.3 if off else 0.9))
    after_dinner = np.maximum(dn_t + 60 + 90 * u[36], 1260 + 40 * z[11])
    dish_t = np.where(off & (u[35] < 0.3), 840 + 60 * z[11], after_dinner)
    for a, b, w in ((0, 10, 50.0), (10, 28, 1800.0), (28, 63, 100.0), (63, 75, 1800.0), (75, 100, 30.0)):
        dish.add(dish_on, dish_t + a, dish_t + b, w)

    # --- EV: evening plug-in, or a timer start at 23:00
    ev = Steps(nb)
    ev_on = home & p.has_ev & (u[37] < p.ev_day_p)
    ev_t = np.where(u[38] < 0.5, np.maximum(back_home, 1080) + 10 + 50 * u[39], 1380 + 60 * u[39])
    ev_kwh = np.clip(p.ev_kwh + 4 * z[12], 4.0, 45.0)
    ev.add(ev_on, ev_t, ev_t + ev_kwh / p.ev_kw * 60.0, p.ev_kw * 1000.0)

    # --- other: hair dryer, vacuum cleaner (plus presence-driven plug loads below)
    oth = Steps(nb)
    hair = home & (u[40] < p.hair_p)
    hair_t = wake + 20 + 30 * u[41]
    oth.add(hair, hair_t, hair_t + 4 + 6 * u[42], 1200 + 600 * u[43])
    vac = home & (u[44] < np.where(off | ~p.employed, 0.3, 0.05))
    vac_t = np.clip(600 + 50 * z[13], wake + 30, sleep - 60)
    oth.add(vac, vac_t, vac_t + 10 + 15 * u[45], 1000 + 400 * u[46])

    def on_window(a: np.ndarray) -> np.ndarray:
        return a[:, :width] if identity else a[:, clock]

    presence = np.clip(on_window(pres.render()) * 0.01, 0.0, 1.0)
    asleep = on_window(sl.render())
    present = presence > 0

    # lighting follows occupancy and darkness (daylight 0..1 from the sun and clouds)
    lighting = (p.light_w * p.scale)[:, None] * np.sqrt(presence) * np.maximum(1.1 - daylight, 0.0)

    # cooling: on hot days AC runs in sessions (evening after coming home, afternoons for those at
    # home) whose length grows with the heat, while people are home and it is warmer than the
    # set-point; computed only for the rows that can cool today (none in winter)
    excess = t_max - p.ac_gate
    ac_day = p.has_ac & home & (excess > -4.0) & (u[47] < 1.0 / (1.0 + np.exp(-excess / 2.0)))
    sessions = Steps(nb)
    ev_start = np.maximum(back_home, 1020.0) + 60 * u[51]
    sessions.add(ac_day, ev_start, ev_start + np.clip(300 + 55 * excess + 60 * z[14], 60, 560), 1.0)
    day_start = 780 + 60 * z[15]
    sessions.add(
        ac_day & ~workday_out & (u[52] < 0.8), day_start, day_start + np.clip(150 + 45 * excess, 0, 330), 1.0
    )
    night = ac_day & (u[48] < p.ac_night_p)
    # sleep timer of 1-4 hours; a quarter of AC nights run until morning
    timer_end = sleep + np.where(u[49] < 0.25, 600.0, 60.0 + 180.0 * u[50])
    cooling = np.zeros_like(presence)
    rows = np.flatnonzero(home & (ac_day | (t_max > 25.0)))
    if rows.size:
        tl, pr, sl_ = t_lag[rows], present[rows], asleep[rows] > 0
        need = tl + 1.5 - p.ac_sp[rows, None]
        window = on_window(sessions.render())[rows] > 0
        asleep_on = night[rows, None] & sl_ & (clock[None, :] < timer_end[rows, None]) & (t_out[rows] > 23.0)
        ac_on = ((pr & window) | asleep_on) & (need > 0)
        rated = (p.ac_rated * p.scale)[rows, None]
        ac_w = np.clip(0.45 * rated + (rated / 15.0) * need, 0.0, rated)
        ac_w *= ac_on * (1.0 - 0.35 * asleep_on) * (0.85 + 0.3 * noise[rows])
        cooling[rows] = ac_w + 50.0 * (pr & (tl > 25.5) & ~ac_on)  # electric fans

    # heating: heat pumps in electrically heated homes, electric mats at night in others; only in
    # the heating season (a cool June morning does not switch the heating on)
    heating = np.zeros_like(presence)
    coldest = np.minimum(t_out.min(axis=1), t_lag.min(axis=1))
    may_heat = p.electric_heating & (coldest < p.heat_sp) & (t_mean < 16.0)
    may_heat |= p.has_mat & (coldest < 10.0) & (t_mean < 13.0)
    rows = np.flatnonzero(home & may_heat)
    if rows.size:
        tl, sl_ = t_lag[rows], asleep[rows]
        home_now = present[rows] | (sl_ > 0)
        heat_need = p.heat_sp[rows, None] - tl - 2.0 * sl_
        area, cop = (p.area * 1.2)[rows, None], p.heat_cop[rows, None]
        hp = np.clip((area * heat_need - 400.0) / cop, 0.0, p.heat_rated[rows, None])
        hp *= home_now & (p.electric_heating & (t_mean < 16.0))[rows, None]
        mats = (p.has_mat & (t_mean < 13.0))[rows, None]
        hp += p.mat_w[rows, None] * ((sl_ > 0) & (t_out[rows] < 10.0) & mats)
        heating[rows] = hp

    other = on_window(oth.render()) + (p.misc_w * p.scale)[:, None] * presence * (0.6 + 0.8 * noise)

    power = {
        "lighting": lighting,
        "cooking": on_window(cook.render()),
        "entertainment": on_window(ent.render()) * present,
        "washer": on_window(washer.render()),
        "dryer": on_window(dryer.render()),
        "dishwasher": on_window(dish.render()),
        "cooling": cooling,
        "heating": heating,
        "ev": on_window(ev.render()),
        "other": other,
    }
    return Behavior(power, presence, asleep)
