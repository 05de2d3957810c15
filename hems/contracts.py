"""Data contracts shared by every layer (DESIGN §4), version 1.

Readings travel between layers as Polars frames with the canonical columns below: the simulator
produces them, the ingest pipeline validates into them, the raw store writes them as
measurements, and the warehouse lands them.  Keeping the schema in one place is what lets the
embedded (Parquet) and real (InfluxDB) raw stores be swapped without touching their callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import polars as pl

CONTRACT_VERSION = "v1"


class DeviceType(StrEnum):
    smart_meter = "smart_meter"
    smart_plug = "smart_plug"
    solar_inverter = "solar_inverter"
    env_sensor = "env_sensor"


TS = pl.Datetime("ms", "UTC")

#: canonical reading fields (MQTT payload keys, canonical units)
READING_FIELDS: dict[str, str] = {
    "power_w": "W",
    "energy_import_kwh": "kWh (cumulative register)",
    "energy_export_kwh": "kWh (cumulative register)",
    "voltage_v": "V",
    "current_a": "A",
    "power_factor": "0..1",
    "solar_power_w": "W",
    "temperature_c": "°C",
    "humidity_pct": "%",
    "co2_ppm": "ppm",
    "air_quality_index": "index",
}

READING_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS,
    "household_id": pl.String(),
    "device_id": pl.String(),
    "device_type": pl.String(),
    **{name: pl.Float64() for name in READING_FIELDS},
}


def empty_readings() -> pl.DataFrame:
    return pl.DataFrame(schema=READING_SCHEMA)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Exactly the columns of ``schema``, in its order and types; missing columns become nulls."""
    return df.select(
        [
            pl.col(name).cast(dtype) if name in df.columns else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


def conform_readings(df: pl.DataFrame) -> pl.DataFrame:
    """Add missing canonical columns as nulls, cast, and order columns canonically."""
    return conform(df, READING_SCHEMA)


@dataclass(frozen=True)
class Measurement:
    """A raw-store measurement: tags identify a series, fields carry values.

    ``field_sources`` maps a stored field name to the canonical reading column it comes from
    (None for measurements that are not built from readings, such as predictions).
    """

    name: str
    tags: tuple[str, ...]
    fields: dict[str, pl.DataType]
    field_sources: dict[str, str] | None = None

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {"ts": TS, **{t: pl.String() for t in self.tags}, **self.fields}


ENERGY_CONSUMPTION = Measurement(
    name="energy_consumption",
    tags=("household_id", "device_id", "device_type"),
    fields={
        "power_consumption": pl.Float64(),
        "energy_import_kwh": pl.Float64(),
        "energy_export_kwh": pl.Float64(),
        "voltage": pl.Float64(),
        "current": pl.Float64(),
        "power_factor": pl.Float64(),
        "solar_generation": pl.Float64(),
    },
    field_sources={
        "power_consumption": "power_w",
        "energy_import_kwh": "energy_import_kwh",
        "energy_export_kwh": "energy_export_kwh",
        "voltage": "voltage_v",
        "current": "current_a",
        "power_factor": "power_factor",
        "solar_generation": "solar_power_w",
    },
)

ENVIRONMENTAL_DATA = Measurement(
    name="environmental_data",
    tags=("household_id", "device_id"),
    fields={
        "temperature": pl.Float64(),
        "humidity": pl.Float64(),
        "co2_level": pl.Float64(),
        "air_quality_index": pl.Float64(),
    },
    field_sources={
        "temperature": "temperature_c",
        "humidity": "humidity_pct",
        "co2_level": "co2_ppm",
        "air_quality_index": "air_quality_index",
    },
)

#: outdoor weather per region (an extension of the seed design: baselines and ML need it)
WEATHER = Measurement(
    name="weather",
    tags=("region",),
    fields={"temperature": pl.Float64(), "cloud_cover": pl.Float64(), "humidity": pl.Float64()},
)

AI_PREDICTIONS = Measurement(
    name="ai_predictions",
    tags=("household_id", "prediction_type", "model_version"),
    fields={
        "predicted_value": pl.Float64(),
        "confidence_score": pl.Float64(),
        "lower": pl.Float64(),
        "upper": pl.Float64(),
        "actual_value": pl.Float64(),
    },
)

MEASUREMENTS: dict[str, Measurement] = {
    m.name: m for m in (ENERGY_CONSUMPTION, ENVIRONMENTAL_DATA, WEATHER, AI_PREDICTIONS)
}

#: which measurement a reading of each device type is stored in
MEASUREMENT_BY_DEVICE_TYPE: dict[str, Measurement] = {
    DeviceType.smart_meter: ENERGY_CONSUMPTION,
    DeviceType.smart_plug: ENERGY_CONSUMPTION,
    DeviceType.solar_inverter: ENERGY_CONSUMPTION,
    DeviceType.env_sensor: ENVIRONMENTAL_DATA,
}


def readings_to_measurements(readings: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Split canonical readings into per-measurement frames (rows with no field value dropped)."""
    out: dict[str, pl.DataFrame] = {}
    readings = conform_readings(readings)
    for measurement in (ENERGY_CONSUMPTION, ENVIRONMENTAL_DATA):
        types = [t for t, m in MEASUREMENT_BY_DEVICE_TYPE.items() if m is measurement]
        assert measurement.field_sources is not None
        part = readings.filter(pl.col("device_type").is_in(types)).select(
            "ts",
            *measurement.tags,
            *[pl.col(src).alias(dst) for dst, src in measurement.field_sources.items()],
        )
        part = part.filter(pl.any_horizontal(pl.col(list(measurement.fields)).is_not_null()))
        if part.height:
            out[measurement.name] = part
    return out


def measurement_to_readings(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Inverse of :func:`readings_to_measurements` for one measurement frame."""
    measurement = MEASUREMENTS[name]
    if measurement.field_sources is None:
        raise ValueError(f"measurement {name!r} does not hold readings")
    renamed = frame.rename({k: v for k, v in measurement.field_sources.items() if k in frame.columns})
    if "device_type" not in renamed.columns:
        renamed = renamed.with_columns(pl.lit(DeviceType.env_sensor.value).alias("device_type"))
    return conform_readings(renamed)
