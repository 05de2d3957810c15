-- The register repair audit (DESIGN §5: record every repair): one row per meter interval that was
-- not taken as its plain register delta, with what the register said and what was used instead.
select
    household_id,
    device_id,
    prev_device_id,
    interval_start_utc,
    interval_end_utc,
    local_date,
    repair_kind,
    interval_hours,
    register_delta_kwh,
    import_kwh as used_kwh,
    case
        when repair_kind = 'gap' then 'register delta kept; reading gap of '
            || cast(cast(round(cast(interval_hours * 60 as numeric), 0) as integer) as varchar) || ' min'
        when repair_kind = 'meter_swap' then 'new meter ' || device_id || ' replaced ' || prev_device_id
            || '; interval estimated from power'
        else 'register delta rejected; interval estimated from power'
    end as note
from {{ ref('int_meter_intervals_differenced') }}
where repair_kind <> 'ok'
