-- The KEPCO residential low-voltage bill (DESIGN §5) per household and calendar month, with every
-- component, priced from the tariff seeds by the kepco_bill macro (the SQL twin of
-- hems.domain.tariff.kepco_bill). kWh is the sum of the household's metered days in the month.
with months as (
    select
        household_id,
        billing_month,
        cast(sum(kwh) as decimal(18, 3)) as kwh,
        cast(count(*) as integer) as metered_days,
        min(date) as first_metered_date,
        max(date) as last_metered_date
    from {{ ref('int_household_days_billed') }}
    group by household_id, billing_month
),

billed as (
    {{ kepco_bill(
        'months',
        ['household_id', 'billing_month', 'metered_days', 'first_metered_date', 'last_metered_date'],
        'kwh'
    ) }}
)

select
    household_id,
    billing_month,
    metered_days,
    first_metered_date,
    last_metered_date,
    billed_kwh as kwh,
    season,
    tier,
    base_charge_krw,
    block1_kwh,
    block1_rate_krw_per_kwh,
    block1_krw,
    block2_kwh,
    block2_rate_krw_per_kwh,
    block2_krw,
    block3_kwh,
    block3_rate_krw_per_kwh,
    block3_krw,
    super_user_kwh,
    super_user_rate_krw_per_kwh,
    super_user_krw,
    energy_charge_krw,
    climate_environment_krw,
    fuel_cost_adjustment_krw,
    subtotal_krw,
    vat_krw,
    power_industry_fund_rate,
    power_industry_fund_krw,
    total_krw
from billed
