-- Daily cost of the progressive monthly KEPCO tariff (DESIGN §5): what a day added to the month's
-- bill, bill(month to date through day d) − bill(through the previous metered day of the month).
-- Before a month's first metered day nothing is billed, so that day carries the base charge and
-- the days of a month sum to its bill in fct_bills_monthly. Usage is metered at 1 Wh.
with days as (
    select
        household_id,
        local_date as date,
        {{ month_start('local_date') }} as billing_month,
        {{ metered_kwh('sum(import_kwh)') }} as kwh
    from {{ ref('int_meter_intervals_differenced') }}
    group by household_id, local_date
),

month_to_date as (
    select
        household_id,
        date,
        billing_month,
        kwh,
        cast(
            sum(kwh) over (
                partition by household_id, billing_month order by date
                rows between unbounded preceding and current row
            ) as decimal(18, 3)
        ) as month_to_date_kwh,
        cast(row_number() over (partition by household_id, billing_month order by date) as integer)
            as metered_day
    from days
),

-- both bills of a day priced in one pass (stacked, then folded back by a group by, not a join)
bill_points as (
    select
        *,
        'through_day' as bill_point,
        month_to_date_kwh as point_kwh
    from month_to_date
    union all
    select
        *,
        'through_previous_day' as bill_point,
        month_to_date_kwh - kwh as point_kwh
    from month_to_date
    where metered_day > 1
),

billed as (
    {{ kepco_bill(
        'bill_points',
        ['household_id', 'date', 'billing_month', 'kwh', 'month_to_date_kwh', 'metered_day', 'bill_point'],
        'point_kwh'
    ) }}
),

folded as (
    select
        household_id,
        date,
        billing_month,
        kwh,
        month_to_date_kwh,
        metered_day,
        max(case when bill_point = 'through_day' then total_krw end) as bill_to_date_krw,
        max(case when bill_point = 'through_previous_day' then total_krw end) as bill_to_previous_day_krw
    from billed
    group by household_id, date, billing_month, kwh, month_to_date_kwh, metered_day
)

select
    household_id,
    date,
    billing_month,
    kwh,
    month_to_date_kwh,
    metered_day,
    bill_to_date_krw,
    cast(
        bill_to_date_krw - case when metered_day = 1 then 0 else bill_to_previous_day_krw end
        as decimal(18, 0)
    ) as cost_krw
from folded
