-- Solar generation per inverter interval: an inverter reports mean AC power over the interval that
-- ends at its timestamp (no register), so energy = power × interval length. Intervals longer than
-- meter_gap_minutes are not integrated (a silent inverter's last power is not carried over a gap).
-- Incremental by local day with var refresh_from, like int_meter_intervals_differenced.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='local_date',
    on_schema_change='sync_all_columns',
) }}
with inverter as (
    select
        household_id,
        device_id,
        ts_utc,
        solar_power_w,
        lag(ts_utc) over (partition by device_id order by ts_utc) as prev_ts_utc,
        lag(ts_local) over (partition by device_id order by ts_utc) as interval_start_local
    from {{ ref('stg_raw__energy_readings') }}
    where device_type = 'solar_inverter' and solar_power_w is not null
    {%- if is_incremental() and var('refresh_from', none) %}
        and ts_local >= {{ refresh_start(var('refresh_lookback_days')) }}
    {%- endif %}
)

select
    household_id,
    device_id,
    prev_ts_utc as interval_start_utc,
    ts_utc as interval_end_utc,
    interval_start_local,
    cast(interval_start_local as date) as local_date,
    cast(extract(hour from interval_start_local) as integer) as local_hour,
    {{ tou_band('extract(hour from interval_start_local)') }} as tou_band,
    greatest(solar_power_w, 0) * {{ hours_between('prev_ts_utc', 'ts_utc') }} / 1000.0 as solar_kwh
from inverter
where
    prev_ts_utc is not null
    and {{ hours_between('prev_ts_utc', 'ts_utc') }} * 60 <= {{ var('meter_gap_minutes') }}
    {%- if is_incremental() and var('refresh_from', none) %}
    and interval_start_local >= {{ refresh_start(0) }}
    {%- endif %}
