-- One row per household: attributes for slicing (region, building type, size, residents, assets),
-- its device counts by type and the span of its metered days.
with devices as (
    select
        household_id,
        cast(count(*) as integer) as devices,
        cast(sum(case when device_type = 'smart_meter' then 1 else 0 end) as integer) as smart_meters,
        cast(sum(case when device_type = 'smart_plug' then 1 else 0 end) as integer) as smart_plugs,
        cast(sum(case when device_type = 'solar_inverter' then 1 else 0 end) as integer) as solar_inverters,
        cast(sum(case when device_type = 'env_sensor' then 1 else 0 end) as integer) as env_sensors
    from {{ ref('stg_app__devices') }}
    group by household_id
),

usage as (
    select
        household_id,
        min(date) as first_metered_date,
        max(date) as last_metered_date,
        cast(count(*) as integer) as metered_days,
        avg(total_consumption_kwh) as mean_daily_kwh
    from {{ ref('energy_usage_daily') }}
    group by household_id
)

select
    h.household_id,
    h.household_name,
    h.region,
    h.building_type,
    h.household_type,
    h.area_m2,
    h.residents,
    h.timezone,
    h.has_pv,
    h.pv_kwp,
    h.has_ev,
    h.electric_heating,
    coalesce(d.devices, 0) as devices,
    coalesce(d.smart_meters, 0) as smart_meters,
    coalesce(d.smart_plugs, 0) as smart_plugs,
    coalesce(d.solar_inverters, 0) as solar_inverters,
    coalesce(d.env_sensors, 0) as env_sensors,
    u.first_metered_date,
    u.last_metered_date,
    coalesce(u.metered_days, 0) as metered_days,
    u.mean_daily_kwh
from {{ ref('stg_app__households') }} as h
left join devices as d on h.household_id = d.household_id
left join usage as u on h.household_id = u.household_id
