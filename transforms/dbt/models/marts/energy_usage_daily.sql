-- Daily usage per household and local day (the seed's energy_usage_daily), built from meter
-- register deltas split by TOU band, with the day's cost as the month-to-date bill difference
-- (int_household_days_billed). Efficiency arrives with the ML issue.
with daily as (
    select
        household_id,
        local_date as date,
        sum(import_kwh) as total_consumption_kwh,
        sum(case when tou_band = 'peak' then import_kwh else 0 end) as peak_usage_kwh,
        sum(case when tou_band = 'mid' then import_kwh else 0 end) as mid_usage_kwh,
        sum(case when tou_band = 'off_peak' then import_kwh else 0 end) as off_peak_usage_kwh,
        sum(export_kwh) as grid_export_kwh,
        sum(import_kwh) as grid_consumption_kwh,
        sum(import_kwh) * {{ var('carbon_factor_kg_per_kwh') }} as carbon_emission_kg,
        cast(count(*) as integer) as interval_count,
        cast(sum(case when register_went_backwards then 1 else 0 end) as integer) as register_resets
    from {{ ref('int_meter_intervals_differenced') }}
    group by household_id, local_date
)

select
    daily.*,
    cast(billed.cost_krw as double precision) as cost_krw
from daily
left join {{ ref('int_household_days_billed') }} as billed
    on daily.household_id = billed.household_id and daily.date = billed.date
