-- Typed, renamed readings with the household-local timestamp; one row per device and instant.
select
    cast(ts as timestamp with time zone) as ts_utc,
    {{ to_local_ts('cast(ts as timestamp with time zone)') }} as ts_local,
    household_id,
    device_id,
    device_type,
    cast(power_consumption as double precision) as power_w,
    cast(energy_import_kwh as double precision) as energy_import_kwh,
    cast(energy_export_kwh as double precision) as energy_export_kwh,
    cast(voltage as double precision) as voltage_v,
    cast(solar_generation as double precision) as solar_power_w
from {{ source('raw', 'energy_readings') }}
