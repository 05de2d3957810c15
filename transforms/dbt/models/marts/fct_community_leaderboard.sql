-- Community leaderboard per local week (Monday start): kWh saved against the household's own
-- baseline and kWh per resident, ranked overall, within region and within building type.
-- Baseline = mean daily kWh of the household's previous (up to) 4 weeks that had at least 4
-- metered days; a partial current week is compared per day, so it ranks fairly mid-week.
-- Households without a baseline yet are listed (per-resident rank) with null savings.
with weeks as (
    select
        household_id,
        cast(date_trunc('week', date) as date) as week_start,
        cast(count(*) as integer) as metered_days,
        sum(total_consumption_kwh) as kwh
    from {{ ref('energy_usage_daily') }}
    group by household_id, cast(date_trunc('week', date) as date)
),

with_baseline as (
    select
        *,
        kwh / metered_days as kwh_per_day,
        avg(case when metered_days >= 4 then kwh / metered_days end) over (
            partition by household_id order by week_start rows between 4 preceding and 1 preceding
        ) as baseline_kwh_per_day
    from weeks
),

scored as (
    select
        w.household_id,
        w.week_start,
        h.region,
        h.building_type,
        h.residents,
        w.metered_days,
        w.kwh,
        w.baseline_kwh_per_day * w.metered_days as baseline_kwh,
        (w.baseline_kwh_per_day - w.kwh_per_day) * w.metered_days as saved_kwh,
        case when w.baseline_kwh_per_day > 0 then 1 - w.kwh_per_day / w.baseline_kwh_per_day end
            as saved_ratio,
        case when h.residents > 0 then w.kwh_per_day / h.residents end as kwh_per_resident_day
    from with_baseline as w
    left join {{ ref('dim_households') }} as h on w.household_id = h.household_id
)

select
    *,
    case when saved_ratio is not null then
        cast(rank() over (partition by week_start order by case when saved_ratio is null then 1 else 0 end, saved_ratio desc) as integer)
    end as rank_saved,
    case when saved_ratio is not null then
        cast(rank() over (
            partition by week_start, region order by case when saved_ratio is null then 1 else 0 end, saved_ratio desc
        ) as integer)
    end as rank_saved_in_region,
    case when saved_ratio is not null then
        cast(rank() over (
            partition by week_start, building_type
            order by case when saved_ratio is null then 1 else 0 end, saved_ratio desc
        ) as integer)
    end as rank_saved_in_building_type,
    cast(rank() over (
        partition by week_start order by case when kwh_per_resident_day is null then 1 else 0 end, kwh_per_resident_day
    ) as integer) as rank_per_resident
from scored
