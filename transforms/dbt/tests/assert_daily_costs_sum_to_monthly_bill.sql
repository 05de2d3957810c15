-- A month's daily costs (month-to-date bill differences) add up to its bill, to the won.
select m.household_id, m.billing_month, m.total_krw, sum(d.cost_krw) as daily_cost_sum
from {{ ref('fct_bills_monthly') }} as m
inner join {{ ref('int_household_days_billed') }} as d
    on m.household_id = d.household_id and m.billing_month = d.billing_month
group by m.household_id, m.billing_month, m.total_krw
having sum(d.cost_krw) <> m.total_krw
