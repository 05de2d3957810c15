-- The models place readings in local time with the fixed offset var local_utc_offset_hours instead
-- of converting zones per row (macros/local_time.sql). That is only right while the zone
-- (var hems_timezone) keeps that offset: every clock hour the landed readings span must convert
-- the same both ways. Returns the hours where they differ (none expected for Asia/Seoul).
with bounds as (
    select min(ts_utc) as first_utc, max(ts_utc) as last_utc
    from {{ ref('stg_raw__energy_readings') }}
),

hours as (
    select {{ epoch_to_ts('floor(' ~ epoch_of('first_utc') ~ ' / 3600) * 3600 + h.i * 3600') }} as hour_utc
    from bounds
    cross join (
        select cast(i as integer) as i from generate_series(0, 24 * 366 * 5) as t(i)
    ) as h
    where floor({{ epoch_of('first_utc') }} / 3600) * 3600 + h.i * 3600 <= {{ epoch_of('last_utc') }}
)

select
    hour_utc,
    {{ to_local_ts('hour_utc') }} as fixed_offset_local,
    {{ to_local_ts_by_zone('hour_utc') }} as zone_local
from hours
where {{ to_local_ts('hour_utc') }} <> {{ to_local_ts_by_zone('hour_utc') }}
