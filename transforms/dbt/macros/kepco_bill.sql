{#- Rounding of DESIGN §5 in one place. The default SQL is the same text on DuckDB and PostgreSQL
    (checked: trunc cuts toward zero, round on decimals is half away from zero on both); dispatch
    leaves room for an adapter that differs. Multiplying by 0.1 keeps decimals exact where a
    division would turn them into doubles on DuckDB. -#}
{% macro trunc_krw(amount) -%}
    {{ return(adapter.dispatch('trunc_krw')(amount)) }}
{%- endmacro %}
{% macro default__trunc_krw(amount) -%}
    trunc({{ amount }})
{%- endmacro %}

{% macro trunc_10_krw(amount) -%}
    {{ return(adapter.dispatch('trunc_10_krw')(amount)) }}
{%- endmacro %}
{% macro default__trunc_10_krw(amount) -%}
    (trunc(({{ amount }}) * 0.1) * 10)
{%- endmacro %}

{% macro round_half_up_krw(amount) -%}
    {{ return(adapter.dispatch('round_half_up_krw')(amount)) }}
{%- endmacro %}
{% macro default__round_half_up_krw(amount) -%}
    round({{ amount }})
{%- endmacro %}

{#- Usage at metering resolution, 1 Wh (half-up), as hems.domain.tariff.metered_kwh does. -#}
{% macro metered_kwh(kwh) -%}
    cast({{ kwh }} as decimal(18, 3))
{%- endmacro %}

{#- First day of a date's month, as a date on both targets. -#}
{% macro month_start(day) -%}
    cast(date_trunc('month', {{ day }}) as date)
{%- endmacro %}

{#- The KEPCO residential low-voltage bill (DESIGN §5) of every row of `relation`, priced from the
    tariff seeds in force on the first day of `month_column`; the SQL twin of
    hems.domain.tariff.kepco_bill (same order, same rounding; tests/transforms compares them).
    Returns one row per `keys` (pass every column the caller needs back as a key: the result is
    one grouped query with no join back, which keeps PostgreSQL's planner off nested-loop
    re-aggregation) with every component; a month with no tariff in force gets null amounts
    (fct_bills_monthly tests not_null on the total, so it fails loudly). -#}
{% macro kepco_bill(relation, keys, kwh_column, month_column='billing_month') -%}
{%- set code = var('kepco_tariff_code') -%}
{%- set key_list = keys | join(', ') -%}
with bill_input as (
    select
        {{ key_list }},
        cast({{ month_column }} as date) as bill_month,
        {{ metered_kwh(kwh_column) }} as bill_kwh
    from {{ relation }}
),

bill_month_rates as (
    -- everything but usage depends on the month alone: season and surcharge rates per month
    select
        m.bill_month,
        s.season,
        max(case when c.component = 'climate_environment' then c.rate end) as climate_rate,
        max(case when c.component = 'fuel_cost_adjustment' then c.rate end) as fuel_rate,
        max(case when c.component = 'vat' then c.rate end) as vat_rate,
        max(case when c.component = 'power_industry_fund' then c.rate end) as fund_rate
    from (select distinct bill_month from bill_input) as m
    left join {{ ref('tariff_kepco_residential_seasons') }} as s
        on
            s.tariff_code = '{{ code }}'
            and s.month_of_year = cast(extract(month from m.bill_month) as integer)
            and s.effective_from <= m.bill_month
            and (s.effective_to is null or m.bill_month <= s.effective_to)
    left join {{ ref('tariff_kepco_surcharges') }} as c
        on
            c.tariff_code = '{{ code }}'
            and c.effective_from <= m.bill_month
            and (c.effective_to is null or m.bill_month <= c.effective_to)
    group by m.bill_month, s.season
),

bill_blocks as (
    select
        {%- for k in keys %}
        i.{{ k }},
        {%- endfor %}
        i.bill_kwh,
        r.season,
        r.climate_rate,
        r.fuel_rate,
        r.vat_rate,
        r.fund_rate,
        b.block,
        b.is_super_user,
        b.energy_rate_krw_per_kwh as rate,
        b.base_charge_krw,
        greatest(least(i.bill_kwh, coalesce(b.block_to_kwh, i.bill_kwh)) - b.block_from_kwh, 0) as block_kwh,
        (
            i.bill_kwh > b.block_from_kwh
            and (b.block_to_kwh is null or i.bill_kwh <= b.block_to_kwh)
        )
        or (i.bill_kwh = 0 and b.block_from_kwh = 0) as is_tier
    from bill_input as i
    left join bill_month_rates as r on i.bill_month = r.bill_month
    left join {{ ref('tariff_kepco_residential_low_voltage') }} as b
        on
            b.tariff_code = '{{ code }}'
            and b.season = r.season
            and b.effective_from <= i.bill_month
            and (b.effective_to is null or i.bill_month <= b.effective_to)
),

bill_charges as (
    select
        {{ key_list }},
        bill_kwh,
        season,
        climate_rate,
        fuel_rate,
        vat_rate,
        fund_rate,
        max(case when is_tier then block end) as tier,
        {{ trunc_krw('sum(case when is_tier then base_charge_krw end)') }} as base_krw,
        {{ trunc_krw('sum(block_kwh * rate)') }} as energy_krw,
        {%- for n in [1, 2, 3] %}
        sum(case when block = {{ n }} and not is_super_user then block_kwh else 0 end) as block{{ n }}_kwh,
        max(case when block = {{ n }} and not is_super_user then rate end) as block{{ n }}_rate,
        sum(case when block = {{ n }} and not is_super_user then block_kwh * rate else 0 end)
            as block{{ n }}_krw,
        {%- endfor %}
        sum(case when is_super_user then block_kwh else 0 end) as super_user_kwh,
        max(case when is_super_user then rate end) as super_user_rate,
        sum(case when is_super_user then block_kwh * rate else 0 end) as super_user_krw,
        {{ trunc_krw('bill_kwh * climate_rate') }} as climate_krw,
        {{ trunc_krw('bill_kwh * fuel_rate') }} as fuel_krw
    from bill_blocks
    group by {{ key_list }}, bill_kwh, season, climate_rate, fuel_rate, vat_rate, fund_rate
),

bill_subtotal as (
    select
        *,
        base_krw + energy_krw + climate_krw + fuel_krw as subtotal_krw
    from bill_charges
),

bill_taxes as (
    select
        *,
        {{ round_half_up_krw('subtotal_krw * vat_rate') }} as vat_krw,
        {{ trunc_10_krw('subtotal_krw * fund_rate') }} as fund_krw
    from bill_subtotal
)

select
    {%- for k in keys %}
    {{ k }},
    {%- endfor %}
    cast(bill_kwh as decimal(18, 3)) as billed_kwh,
    cast(case when subtotal_krw is not null then season end as varchar(16)) as season,
    cast(case when subtotal_krw is not null then tier end as integer) as tier,
    cast(base_krw as decimal(18, 0)) as base_charge_krw,
    {%- for n in [1, 2, 3] %}
    cast(block{{ n }}_kwh as decimal(18, 3)) as block{{ n }}_kwh,
    cast(block{{ n }}_rate as decimal(18, 4)) as block{{ n }}_rate_krw_per_kwh,
    cast(block{{ n }}_krw as decimal(18, 4)) as block{{ n }}_krw,
    {%- endfor %}
    cast(super_user_kwh as decimal(18, 3)) as super_user_kwh,
    cast(super_user_rate as decimal(18, 4)) as super_user_rate_krw_per_kwh,
    cast(super_user_krw as decimal(18, 4)) as super_user_krw,
    cast(energy_krw as decimal(18, 0)) as energy_charge_krw,
    cast(climate_krw as decimal(18, 0)) as climate_environment_krw,
    cast(fuel_krw as decimal(18, 0)) as fuel_cost_adjustment_krw,
    cast(subtotal_krw as decimal(18, 0)) as subtotal_krw,
    cast(vat_krw as decimal(18, 0)) as vat_krw,
    cast(fund_rate as decimal(18, 4)) as power_industry_fund_rate,
    cast(fund_krw as decimal(18, 0)) as power_industry_fund_krw,
    cast({{ trunc_10_krw('subtotal_krw + vat_krw + fund_krw') }} as decimal(18, 0)) as total_krw
from bill_taxes
{%- endmacro %}
