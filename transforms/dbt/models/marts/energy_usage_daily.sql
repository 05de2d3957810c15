-- Daily usage per household and local day (the seed's energy_usage_daily).
--   grid_consumption_kwh   grid import from repaired meter register deltas (int_meter_intervals_differenced)
--   peak/mid/off_peak      that grid import split by TOU band (what a TOU tariff bills)
--   solar_generation_kwh   inverter output (int_solar_intervals_integrated)
--   self_consumed_solar    generation not exported: max(generation − export, 0)
--   total_consumption_kwh  what the home used: grid import + self-consumed solar
--   cost_krw               the day's KEPCO cost on grid import (month-to-date bill difference)
--   carbon_emission_kg     grid import × the Korean grid factor (self-consumed solar emits nothing)
-- efficiency_score is the ML efficiency regressor's (expected ÷ actual); null until it has run.
with meter_days as (
    select
        household_id,
        local_date as date,
        sum(import_kwh) as grid_consumption_kwh,
        sum(case when tou_band = 'peak' then import_kwh else 0 end) as peak_usage_kwh,
        sum(case when tou_band = 'mid' then import_kwh else 0 end) as mid_usage_kwh,
        sum(case when tou_band = 'off_peak' then import_kwh else 0 end) as off_peak_usage_kwh,
        sum(export_kwh) as grid_export_kwh,
        -- a row sums interval_count meter intervals; a gap cut into hour pieces counts once, on the
        -- day its first piece falls
        cast(sum(case when is_first_piece then interval_count else 0 end) as integer) as interval_count,
        cast(sum(case when repair_kind not in ('ok', 'gap') then interval_count else 0 end) as integer)
            as repaired_intervals,
        cast(sum(case when repair_kind = 'gap' and is_first_piece then 1 else 0 end) as integer)
            as gap_intervals
    from {{ ref('int_meter_intervals_differenced') }}
    group by household_id, local_date
),

solar_days as (
    select household_id, local_date as date, sum(solar_kwh) as solar_generation_kwh
    from {{ ref('int_solar_intervals_integrated') }}
    group by household_id, local_date
),

daily as (
    select
        meter_days.*,
        coalesce(solar_days.solar_generation_kwh, 0) as solar_generation_kwh,
        greatest(coalesce(solar_days.solar_generation_kwh, 0) - meter_days.grid_export_kwh, 0)
            as self_consumed_solar_kwh
    from meter_days
    left join solar_days
        on meter_days.household_id = solar_days.household_id and meter_days.date = solar_days.date
)

select
    daily.household_id,
    daily.date,
    daily.grid_consumption_kwh + daily.self_consumed_solar_kwh as total_consumption_kwh,
    daily.peak_usage_kwh,
    daily.mid_usage_kwh,
    daily.off_peak_usage_kwh,
    daily.solar_generation_kwh,
    daily.self_consumed_solar_kwh,
    daily.grid_export_kwh,
    daily.grid_consumption_kwh,
    daily.grid_consumption_kwh * {{ var('carbon_factor_kg_per_kwh') }} as carbon_emission_kg,
    cast(billed.cost_krw as double precision) as cost_krw,
    cast(null as double precision) as efficiency_score,
    daily.interval_count,
    daily.repaired_intervals,
    daily.gap_intervals
from daily
left join {{ ref('int_household_days_billed') }} as billed
    on daily.household_id = billed.household_id and daily.date = billed.date
