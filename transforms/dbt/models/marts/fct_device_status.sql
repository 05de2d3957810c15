-- Device status as of the newest landed reading (data time, so a rebuild is reproducible): last
-- seen, reporting interval, completeness over the last 24 h and online/offline — offline when a
-- device has been silent for device_offline_after_intervals of its own reporting intervals.
-- Live status (seconds old) is the API's, from the cache; this is the warehouse's daily view.
-- Environment sensors report to another measurement that is not landed here: status 'unknown'.
with readings as (
    select device_id, household_id, device_type, ts_utc
    from {{ ref('stg_raw__energy_readings') }}
),

as_of as (
    select max(ts_utc) as as_of_utc from readings
),

seen as (
    select
        r.device_id,
        max(r.household_id) as household_id,
        max(r.device_type) as device_type,
        min(r.ts_utc) as first_seen_utc,
        max(r.ts_utc) as last_seen_utc,
        cast(count(*) as integer) as readings,
        cast(sum(case when r.ts_utc > a.as_of_utc - interval '1 day' then 1 else 0 end) as integer)
            as readings_last_day
    from readings as r
    cross join as_of as a
    group by r.device_id
),

devices as (
    select
        coalesce(s.device_id, d.device_id) as device_id,
        coalesce(s.household_id, d.household_id) as household_id,
        coalesce(s.device_type, d.device_type) as device_type,
        d.device_id is not null as in_inventory,
        s.first_seen_utc,
        s.last_seen_utc,
        coalesce(s.readings, 0) as readings,
        coalesce(s.readings_last_day, 0) as readings_last_day,
        case
            when s.readings > 1
                then {{ hours_between('s.first_seen_utc', 's.last_seen_utc') }} * 60.0 / (s.readings - 1)
        end as mean_interval_minutes
    from seen as s
    full outer join {{ ref('stg_app__devices') }} as d on s.device_id = d.device_id
)

select
    devices.*,
    a.as_of_utc,
    case
        when devices.mean_interval_minutes > 0
            then least(devices.readings_last_day / (1440.0 / devices.mean_interval_minutes), 1.0)
    end as completeness_last_day,
    case
        when devices.last_seen_utc is null and devices.device_type = 'env_sensor' then 'unknown'
        when devices.last_seen_utc is null then 'never_seen'
        when {{ hours_between('devices.last_seen_utc', 'a.as_of_utc') }} * 60.0
            <= {{ var('device_offline_after_intervals') }} * coalesce(devices.mean_interval_minutes, 1.0)
            then 'online'
        else 'offline'
    end as status
from devices
cross join as_of as a
