-- Energy per meter interval from cumulative register deltas (DESIGN §5: registers, not power).
-- A reading at ts is the register through ts, so the delta to the previous reading belongs to the
-- interval that started at the previous reading: its local day, hour and TOU band.
-- Negative deltas (counter reset, meter swap) are not energy: they are flagged and contribute 0
-- here; the full repair audit comes with the warehouse issue.
with meter as (
    select *
    from {{ ref('stg_raw__energy_readings') }}
    where device_type = 'smart_meter' and energy_import_kwh is not null
),

lagged as (
    select
        household_id,
        device_id,
        ts_utc,
        lag(ts_utc) over (partition by device_id order by ts_utc) as prev_ts_utc,
        lag(ts_local) over (partition by device_id order by ts_utc) as interval_start_local,
        energy_import_kwh - lag(energy_import_kwh) over (partition by device_id order by ts_utc)
            as import_delta_kwh,
        energy_export_kwh - lag(energy_export_kwh) over (partition by device_id order by ts_utc)
            as export_delta_kwh
    from meter
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
    case when import_delta_kwh >= 0 then import_delta_kwh else 0 end as import_kwh,
    case when coalesce(export_delta_kwh, 0) >= 0 then coalesce(export_delta_kwh, 0) else 0 end as export_kwh,
    import_delta_kwh < 0 as register_went_backwards
from lagged
where prev_ts_utc is not null
