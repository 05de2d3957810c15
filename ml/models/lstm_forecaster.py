"""Day-ahead hourly consumption forecaster: a small LSTM encoder-decoder with quantile outputs.

For each household and each local midnight (the forecast origin) it predicts the next 24 hours:
a mean (trained on squared error, so household forecasts add up to an unbiased aggregate) and
the 10 % and 90 % quantiles (trained on the pinball loss) that make the prediction interval.

Inputs per sample, all known at the origin:

* past 72 hours (encoder LSTM): load, outdoor and indoor temperature, hour of day, day off;
* next 24 hours (decoder LSTM): hour, weekday, month, Korean holiday and day-off flags, the load
  24 h and 168 h earlier, and outdoor temperature 24 h earlier (a persistence weather forecast —
  no weather forecast is stored, and training on actual future temperatures would flatter the
  backtest);
* household attributes (area, residents, building type, heating, EV, PV).

Load is divided by the household's mean of the 168 hours before the origin, so one model serves
a one-person flat and a family house alike and a new household needs only a week of history.
Preprocessing is stateless (fixed constants), so the saved Keras model is the whole model.

TensorFlow is imported lazily (it takes seconds), with quiet logs and limited threads.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from ml.features import TS, with_calendar
from ml.metrics import forecast_metrics, seasonal_naive_scale
from ml.models.base import Model, require_columns

HORIZON = 24
HISTORY = 168  # hours of history a sample needs (the 168-hour lag and the local level)
QUANTILES = (0.1, 0.9)
INTERVAL_LEVEL = QUANTILES[1] - QUANTILES[0]
FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "household_id": pl.String(),
    "origin": TS,
    "ts": TS,
    "predicted": pl.Float64(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
    "actual": pl.Float64(),
}
_NEEDED = (
    "household_id",
    "ts",
    "kwh",
    "outdoor_temp_c",
    "indoor_temp_c",
    "area_m2",
    "residents",
    "building_type",
    "electric_heating",
    "has_ev",
    "has_pv",
)
_CAL = (
    "hour",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
    "is_holiday",
    "day_off",
)


def tensorflow(threads: int = 2):
    """Import TensorFlow quietly with at most ``threads`` CPU threads (once per process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier call: keep those settings
    tf.get_logger().setLevel("ERROR")
    return tf


@dataclass(frozen=True)
class ForecasterConfig:
    lookback: int = 72
    units: int = 32
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 3e-3
    patience: int = 5
    validation_fraction: float = 0.15
    seed: int = 0
    threads: int = 2
    timezone: str = "Asia/Seoul"

    def __post_init__(self) -> None:
        if not 1 <= self.lookback <= HISTORY:
            raise ValueError(f"lookback must be 1..{HISTORY} hours, got {self.lookback}")
        for name in ("units", "epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1 or not 0 <= self.validation_fraction < 1:
            raise ValueError("dropout and validation_fraction must be in [0, 1)")


@dataclass
class _Windows:
    past: np.ndarray  # (n, lookback, 6)
    future: np.ndarray  # (n, 24, 13)
    static: np.ndarray  # (n, 8)
    target: np.ndarray  # (n, 24) normalized, NaN where unknown
    scale: np.ndarray  # (n,)
    household: np.ndarray  # (n,) str
    origin_ms: np.ndarray  # (n,) int64


class LSTMForecaster(Model):
    """Day-ahead hourly kWh per household with a 10–90 % prediction interval."""

    name: ClassVar[str] = "hems-consumption-forecaster"
    primary_metric: ClassVar[str] = "cv_rmse"
    higher_is_better: ClassVar[bool] = False

    def __init__(self, config: ForecasterConfig | None = None) -> None:
        self.config = config or ForecasterConfig()
        self._keras: Any = None
        self._fitted = False
        self.history: dict[str, list[float]] = {}
        self.mase_scale: float | None = None
        #: each training household's mean hourly kWh (the unit its load is modelled in)
        self.scales: dict[str, float] = {}

    def params(self) -> dict[str, Any]:
        return {**asdict(self.config), "horizon": HORIZON, "quantiles": str(QUANTILES)}

    # ------------------------------------------------------------------ training
    def fit(self, frame: pl.DataFrame, until: datetime | None = None) -> Self:
        """Train on every origin whose 24 target hours end before ``until`` (default: all data)."""
        cfg = self.config
        train_rows = frame if until is None else frame.filter(pl.col("ts") < until)
        levels = train_rows.group_by("household_id").agg(pl.col("kwh").mean()).drop_nulls()
        self.scales = {hh: max(float(v), 0.05) for hh, v in levels.iter_rows()}
        w = self._windows(frame, training=True, until=until)
        if w.target.shape[0] < 4:
            raise ValueError(
                f"only {w.target.shape[0]} complete training days: the forecaster needs at least "
                f"{HISTORY // 24 + 1} days of hourly load per household"
            )
        tf = tensorflow(cfg.threads)
        import keras

        keras.utils.set_random_seed(cfg.seed)
        self._keras = _build(w.past.shape[1:], w.future.shape[1:], w.static.shape[1:], cfg)
        order = np.argsort(w.origin_ms, kind="stable")  # validate on the latest origins
        n_val = int(len(order) * cfg.validation_fraction) if len(order) >= 20 else 0
        train_idx, val_idx = order[: len(order) - n_val], order[len(order) - n_val :]

        # weight samples by their household's level: the loss is on normalized load, but kWh is what
        # adds up across households, and an unweighted ratio loss over-predicts the fleet total
        weight = (w.scale / w.scale.mean()).astype(np.float32)

        def take(idx: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
            return [w.past[idx], w.future[idx], w.static[idx]], w.target[idx], weight[idx]

        x, y, sw = take(train_idx)
        callbacks = []
        validation = None
        if n_val:
            validation = take(val_idx)
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    patience=cfg.patience, restore_best_weights=True, min_delta=1e-4
                )
            )
        with tf.device("/CPU:0"):
            hist = self._keras.fit(
                x,
                y,
                sample_weight=sw,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                validation_data=validation,
                callbacks=callbacks,
                shuffle=True,
                verbose=0,
            )
        self.history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        self.mase_scale = _pooled_naive_scale(train_rows)
        self._fitted = True
        return self

    # ------------------------------------------------------------------ prediction
    def forecast(
        self, frame: pl.DataFrame, origins: list[datetime] | None = None, weather: str = "observed"
    ) -> pl.DataFrame:
        """24-hour forecasts from each origin (default: the next local midnight after the data).

        ``weather="observed"`` uses the frame's outdoor temperature of the target hours where it has
        one (standing in for a day-ahead weather forecast) and the temperature 24 h earlier where it
        does not (the next day); ``"persistence"`` always uses the temperature 24 h earlier.
        Returns :data:`FORECAST_SCHEMA` rows; ``actual`` is the observed load where the frame has it.
        """
        if weather not in ("observed", "persistence"):
            raise ValueError(f"weather must be 'observed' or 'persistence', got {weather!r}")
        self._check_fitted()
        frame = _extend(frame, HORIZON + 24, self.config.timezone)
        if origins is None:
            origins = [_next_midnight(frame)]
        w = self._windows(frame, training=False, origins=origins, weather=weather)
        if w.past.shape[0] == 0:
            return pl.DataFrame(schema=FORECAST_SCHEMA)
        raw = np.asarray(self._keras([w.past, w.future, w.static], training=False))
        raw = np.sort(raw[..., [1, 0, 2]], axis=-1)  # lower <= mean <= upper, whatever the net says
        scaled = np.maximum(raw * w.scale[:, None, None], 0.0)
        ts = w.origin_ms[:, None] + np.arange(HORIZON)[None, :] * 3_600_000
        return pl.DataFrame(
            {
                "household_id": np.repeat(w.household, HORIZON),
                "origin": np.repeat(w.origin_ms, HORIZON),
                "ts": ts.ravel(),
                "predicted": scaled[..., 1].ravel(),
                "lower": scaled[..., 0].ravel(),
                "upper": scaled[..., 2].ravel(),
                "actual": (w.target * w.scale[:, None]).ravel(),
            }
        ).with_columns(
            pl.col("origin").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            pl.col("ts").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            pl.col("actual").fill_nan(None),
        )

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The next day's forecast for every household in an hourly feature frame."""
        return self.forecast(frame)

    def evaluate(self, frame: pl.DataFrame, start: datetime | None = None) -> dict[str, float]:
        """Metrics over every local-midnight origin at or after ``start`` with observed targets."""
        origins = origins_between(frame, start)
        fc = self.forecast(frame, origins).filter(pl.col("actual").is_not_null())
        if fc.is_empty():
            raise ValueError("no origin in the evaluation frame has observed targets")
        return score_forecast(fc, "predicted", self.mase_scale)

    # ------------------------------------------------------------------ persistence
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_keras"] = None
        return state

    def save(self, path: Path) -> None:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._keras.save(path / "model.keras")
        with (path / "model.pkl").open("wb") as fh:
            pickle.dump(self, fh)

    def _restore(self, path: Path) -> None:
        tensorflow(self.config.threads)
        import keras

        self._keras = keras.models.load_model(Path(path) / "model.keras", compile=False)

    # ------------------------------------------------------------------ windows
    def _windows(
        self,
        frame: pl.DataFrame,
        training: bool,
        until: datetime | None = None,
        origins: list[datetime] | None = None,
        weather: str = "observed",
    ) -> _Windows:
        require_columns(frame, _NEEDED, "hourly features")
        if "hour" not in frame.columns:
            frame = with_calendar(frame, self.config.timezone)
        frame = frame.sort("household_id", "ts")
        lookback = self.config.lookback
        wanted = None if origins is None else np.array([_ms(o) for o in origins], dtype=np.int64)
        until_ms = None if until is None else _ms(until)
        parts: list[tuple] = []
        for (hh,), g in frame.partition_by("household_id", as_dict=True, maintain_order=True).items():
            ts = g["ts"].dt.epoch("ms").to_numpy()
            y = g["kwh"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            if y.size < HISTORY + 1:
                continue
            cal = {c: g[c].cast(pl.Float64).fill_null(0.0).to_numpy() for c in _CAL}
            out_raw = (g["outdoor_temp_c"].cast(pl.Float64).fill_null(np.nan).to_numpy() - 15.0) / 10.0
            out_t = np.nan_to_num(out_raw, nan=0.0)
            in_t = (g["indoor_temp_c"].cast(pl.Float64).fill_null(22.0).to_numpy() - 22.0) / 5.0
            idx = np.flatnonzero(cal["hour"] == 0)
            idx = idx[(idx >= HISTORY) & (idx + HORIZON <= y.size)]
            if wanted is not None:
                idx = idx[np.isin(ts[idx], wanted)]
            if until_ms is not None:
                idx = idx[ts[idx] + HORIZON * 3_600_000 <= until_ms]
            if idx.size == 0:
                continue
            if hh in self.scales:
                scale = np.full(idx.size, self.scales[hh])
            else:  # a household the model has not seen: the level of its last week
                hist = y[idx[:, None] + np.arange(-HISTORY, 0)[None, :]]
                with np.errstate(all="ignore"):
                    scale = np.nanmean(hist, axis=1)
            ok = np.isfinite(scale)
            idx, scale = idx[ok], np.maximum(scale[ok], 0.05)
            if idx.size == 0:
                continue
            yn = y[None, :] / scale[:, None]  # (k, n) normalized per sample

            def at(offsets: np.ndarray, idx: np.ndarray = idx) -> np.ndarray:
                return idx[:, None] + offsets[None, :]

            p_i = at(np.arange(-lookback, 0))
            rows = np.arange(idx.size)[:, None]
            y_past = np.nan_to_num(yn[rows, p_i], nan=1.0)
            past = np.stack(
                [
                    y_past,
                    out_t[p_i],
                    in_t[p_i],
                    cal["hour_sin"][p_i],
                    cal["hour_cos"][p_i],
                    cal["day_off"][p_i],
                ],
                axis=-1,
            )
            f_i = at(np.arange(HORIZON))
            future = np.stack(
                [
                    cal["hour_sin"][f_i],
                    cal["hour_cos"][f_i],
                    cal["dow_sin"][f_i],
                    cal["dow_cos"][f_i],
                    cal["is_holiday"][f_i],
                    cal["day_off"][f_i],
                    _future_temperature(out_raw, f_i, weather),
                    out_t[f_i - 24],
                    out_t[f_i - 168],
                    np.nan_to_num(yn[rows, f_i - 24], nan=1.0),
                    np.nan_to_num(yn[rows, f_i - 168], nan=1.0),
                    cal["month_sin"][f_i],
                    cal["month_cos"][f_i],
                ],
                axis=-1,
            )
            target = yn[rows, f_i]
            if training:
                keep = np.isfinite(target).all(axis=1)
                idx, scale, past, future, target = (
                    idx[keep],
                    scale[keep],
                    past[keep],
                    future[keep],
                    target[keep],
                )
            first = g.row(0, named=True)
            static_row = np.array(
                [
                    np.log(max(float(first["area_m2"] or 60.0), 10.0)) - 4.0,
                    float(first["residents"] or 2) / 3.0,
                    float(first["building_type"] == "apartment"),
                    float(bool(first["electric_heating"])),
                    float(bool(first["has_ev"])),
                    float(bool(first["has_pv"])),
                ]
            )
            week_temp = np.mean(out_t[idx[:, None] + np.arange(-HISTORY, 0)[None, :]], axis=1)
            static = np.column_stack([np.tile(static_row, (idx.size, 1)), np.log(scale), week_temp])
            parts.append((past, future, static, target, scale, np.full(idx.size, hh, dtype=object), ts[idx]))
        if not parts:
            lb = lookback
            return _Windows(
                np.zeros((0, lb, 6)), np.zeros((0, HORIZON, 13)), np.zeros((0, 8)),
                np.zeros((0, HORIZON)), np.zeros(0), np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64),
            )  # fmt: skip
        cols = list(zip(*parts, strict=True))
        return _Windows(
            *(np.concatenate(c).astype(np.float32) for c in cols[:4]), *(np.concatenate(c) for c in cols[4:])
        )


# ---------------------------------------------------------------------- helpers
def _build(past_shape: tuple, future_shape: tuple, static_shape: tuple, cfg: ForecasterConfig):
    import keras
    from keras import layers, ops

    past = keras.Input(past_shape, name="past")
    future = keras.Input(future_shape, name="future")
    static = keras.Input(static_shape, name="static")
    encoded = layers.LSTM(cfg.units, name="encoder")(past)
    context = layers.Dense(cfg.units, activation="relu")(layers.Concatenate()([encoded, static]))
    repeated = layers.RepeatVector(HORIZON)(context)
    decoded = layers.LSTM(cfg.units, return_sequences=True, name="decoder")(
        layers.Concatenate(axis=-1)([repeated, future])
    )
    hidden = layers.Dense(cfg.units, activation="relu")(layers.Concatenate(axis=-1)([decoded, future]))
    hidden = layers.Dropout(cfg.dropout)(hidden)
    out = layers.Dense(1 + len(QUANTILES), name="mean_and_quantiles")(hidden)
    model = keras.Model([past, future, static], out)

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        total = ops.mean(ops.square(y_true - y_pred[..., 0]))
        for i, q in enumerate(QUANTILES, start=1):
            e = y_true - y_pred[..., i]
            total = total + ops.mean(ops.maximum(q * e, (q - 1.0) * e))
        return total

    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss)
    return model


def _future_temperature(out_raw: np.ndarray, f_i: np.ndarray, weather: str) -> np.ndarray:
    """Scaled outdoor temperature for the target hours: observed where known, else 24 h earlier."""
    earlier = np.nan_to_num(out_raw[f_i - 24], nan=0.0)
    if weather == "persistence":
        return earlier
    now = out_raw[f_i]
    return np.where(np.isfinite(now), now, earlier)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("origins and cut-offs must be timezone-aware")
    return int(value.timestamp() * 1000)


def _extend(frame: pl.DataFrame, hours: int, tz: str) -> pl.DataFrame:
    """Append ``hours`` empty future rows per household (calendar and attributes filled in)."""
    require_columns(frame, _NEEDED, "hourly features")
    last = frame.group_by("household_id").agg(pl.col("ts").max().alias("_last"))
    future = last.select(
        "household_id",
        pl.datetime_ranges(
            pl.col("_last") + pl.duration(hours=1), pl.col("_last") + pl.duration(hours=hours), "1h"
        ).alias("ts"),
    ).explode("ts")
    attrs = frame.group_by("household_id").agg(
        pl.col(c).last()
        for c in ("area_m2", "residents", "building_type", "electric_heating", "has_ev", "has_pv")
    )
    future = future.join(attrs, on="household_id").with_columns(pl.col("ts").cast(TS))
    base = frame.select(list(dict.fromkeys([*_NEEDED])))
    out = pl.concat([base, future], how="diagonal_relaxed").sort("household_id", "ts")
    return with_calendar(out, tz)


def _next_midnight(frame: pl.DataFrame) -> datetime:
    """The first local midnight after the last observed load."""
    observed = frame.filter(pl.col("kwh").is_not_null())
    last = observed["ts"].max()
    later = frame.filter((pl.col("ts") > last) & (pl.col("hour") == 0))
    if later.is_empty():
        raise ValueError("cannot place the next local midnight after the data")
    return later["ts"].min()  # type: ignore[return-value]


def origins_between(
    frame: pl.DataFrame, start: datetime | None = None, end: datetime | None = None
) -> list[datetime]:
    """Local midnights (the frame's ``hour`` column) in ``[start, end)`` with observed load."""
    require_columns(frame, ("ts", "hour", "kwh"), "hourly features")
    mid = frame.filter((pl.col("hour") == 0) & pl.col("kwh").is_not_null())
    if start is not None:
        mid = mid.filter(pl.col("ts") >= start)
    if end is not None:
        mid = mid.filter(pl.col("ts") < end)
    return sorted(set(mid["ts"].to_list()))


def _pooled_naive_scale(frame: pl.DataFrame) -> float | None:
    """Mean in-sample |y(t) − y(t−24)| over households (the MASE scale)."""
    diffs = []
    for g in frame.sort("household_id", "ts").partition_by("household_id"):
        y = g["kwh"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if y.size > 24:
            d = np.abs(y[24:] - y[:-24])
            diffs.append(d[np.isfinite(d)])
    if not diffs or not np.concatenate(diffs).size:
        return None
    return float(np.concatenate(diffs).mean())


def score_forecast(forecasts: pl.DataFrame, column: str, mase_scale: float | None = None) -> dict[str, float]:
    """Household-level (pooled) and fleet-aggregate metrics of one forecast column, plus coverage."""
    fc = forecasts.filter(pl.col("actual").is_not_null() & pl.col(column).is_not_null())
    out = forecast_metrics(fc["actual"], fc[column], mase_scale)
    agg = fc.group_by("ts").agg(pl.col("actual").sum(), pl.col(column).sum(), pl.len().alias("n"))
    agg = agg.filter(pl.col("n") == pl.col("n").max())  # hours where every household is scored
    for k, v in forecast_metrics(agg["actual"], agg[column]).items():
        out[f"aggregate_{k}"] = v
    if {"lower", "upper"} <= set(fc.columns) and column == "predicted":
        inside = (fc["actual"] >= fc["lower"]) & (fc["actual"] <= fc["upper"])
        out["interval_coverage"] = float(inside.mean())  # type: ignore[arg-type]
    out["n_points"] = float(fc.height)
    return out


__all__ = [
    "FORECAST_SCHEMA",
    "HORIZON",
    "INTERVAL_LEVEL",
    "ForecasterConfig",
    "LSTMForecaster",
    "origins_between",
    "score_forecast",
    "seasonal_naive_scale",
    "tensorflow",
]
