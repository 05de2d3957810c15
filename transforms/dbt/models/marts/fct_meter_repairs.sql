-- The register repair audit (DESIGN §5: record every repair): one row per meter interval that was
-- not taken as its plain register delta, with what the register said and what was used instead.
-- A gap's hour pieces (int_meter_intervals_differenced) fold back into its one interval here.
with repaired as (
    select
        household_id,
        max(device_id) as device_id,
        max(prev_device_id) as prev_device_id,
        min(interval_start_utc) as interval_start_utc,
        source_interval_end_utc as interval_end_utc,
        min(local_date) as local_date,
        max(local_date) as last_local_date,
        max(repair_kind) as repair_kind,
        sum(interval_hours) as interval_hours,
        sum(register_delta_kwh) as register_delta_kwh,
        sum(import_kwh) as used_kwh,
        cast(count(*) as integer) as pieces
    from {{ ref('int_meter_intervals_differenced') }}
    where repair_kind <> 'ok'
    group by household_id, source_interval_end_utc
)

select
    *,
    case
        when repair_kind = 'gap' and used_kwh = 0 and register_delta_kwh > 0
            then 'reading gap too long to attribute (over meter_gap_spread_max_days): not counted'
        when repair_kind = 'gap' then 'register delta kept, spread over the ' || cast(pieces as varchar)
            || ' clock hours of a reading gap'
        when repair_kind = 'meter_swap' then 'new meter ' || device_id || ' replaced ' || prev_device_id
            || '; interval estimated from power'
        when used_kwh = 0 then 'register delta rejected; interval too long to estimate from power: 0 kWh'
        else 'register delta rejected; interval estimated from power'
    end as note
from repaired
