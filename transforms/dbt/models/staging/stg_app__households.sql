-- Households as the app database holds them (region, building type, size, residents, assets).
select
    household_id,
    name as household_name,
    coalesce(region, 'unknown') as region,
    coalesce(building_type, 'unknown') as building_type,
    coalesce(household_type, 'unknown') as household_type,
    cast(area_m2 as double precision) as area_m2,
    cast(residents as integer) as residents,
    coalesce(timezone, '{{ var("hems_timezone") }}') as timezone,
    coalesce(has_pv, false) as has_pv,
    cast(pv_kwp as double precision) as pv_kwp,
    coalesce(has_ev, false) as has_ev,
    coalesce(electric_heating, false) as electric_heating
from {{ source('raw', 'households') }}
