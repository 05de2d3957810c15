-- Energy per meter interval from cumulative register deltas, repaired (DESIGN §5: registers, not
-- power; never a negative or spiked day; every repair recorded).
--
-- A reading at ts is the register through ts, so the delta to the previous reading belongs to the
-- interval that started at the previous reading: its local day, hour and TOU band. Intervals are
-- formed per household over its smart meters in time order, so a meter swap (a new device id whose
-- register starts anew) is one interval, not a lost one. Each interval is classified:
--   ok                 register delta ≥ 0 and below meter_max_kw on average: the delta is the energy
--   gap                ok, but longer than meter_gap_minutes: the delta is exact but its time is not,
--                      so it is spread evenly over the clock hours the gap spans (one row per hour
--                      piece) — a gap across midnight never piles its energy onto one day. A gap
--                      longer than meter_gap_spread_max_days is not attributed at all (0 kWh, audited)
--   spike              the delta implies more than meter_max_kw: energy estimated from power
--   counter_reset      the register went backwards to below meter_reset_below_kwh: estimated from power
--   register_backwards the register went backwards otherwise (e.g. a spike reverting): from power
--   meter_swap         the previous reading came from another meter of the household: from power
-- The power estimate is the mean of the two readings' power_w over the interval, clamped to
-- [0, meter_max_kw]; over an interval longer than meter_gap_minutes power says nothing, so such a
-- repaired interval counts 0 kWh. fct_meter_repairs lists every interval that is not `ok`
-- (source_interval_end_utc ties the hour pieces of a gap to their interval).
--
-- Incremental: with var refresh_from (a local date, set by the micro-batch and nightly runs) only
-- the days from refresh_from on are recomputed and replaced (delete+insert by local_date), reading
-- readings from refresh_lookback_days earlier so each day's first interval has its previous
-- reading. Without the var every day is recomputed. A reading gap longer than the lookback that
-- ends inside the refreshed days needs a run without refresh_from (the nightly full build).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='local_date',
    on_schema_change='sync_all_columns',
) }}
with meter as (
    select *
    from {{ ref('stg_raw__energy_readings') }}
    where device_type = 'smart_meter' and energy_import_kwh is not null
    {%- if is_incremental() and var('refresh_from', none) %}
        and ts_local >= {{ refresh_start(var('refresh_lookback_days')) }}
    {%- endif %}
),

lagged as (
    select
        household_id,
        device_id,
        ts_utc,
        ts_local,
        energy_import_kwh,
        energy_export_kwh,
        power_w,
        lag(device_id) over w as prev_device_id,
        lag(ts_utc) over w as prev_ts_utc,
        lag(ts_local) over w as interval_start_local,
        lag(energy_import_kwh) over w as prev_import_kwh,
        lag(energy_export_kwh) over w as prev_export_kwh,
        lag(power_w) over w as prev_power_w
    from meter
    window w as (partition by household_id order by ts_utc, device_id)
),

measured as (
    select
        *,
        energy_import_kwh - prev_import_kwh as import_delta_kwh,
        coalesce(energy_export_kwh - prev_export_kwh, 0) as export_delta_kwh,
        {{ hours_between('prev_ts_utc', 'ts_utc') }} as interval_hours
    from lagged
    where prev_ts_utc is not null
),

classified as (
    select
        *,
        case
            when device_id <> prev_device_id then 'meter_swap'
            when import_delta_kwh < 0 and energy_import_kwh < {{ var('meter_reset_below_kwh') }}
                then 'counter_reset'
            when import_delta_kwh < 0 then 'register_backwards'
            when interval_hours <= 0
                or import_delta_kwh > {{ var('meter_max_kw') }} * interval_hours then 'spike'
            when interval_hours * 60 > {{ var('meter_gap_minutes') }} then 'gap'
            else 'ok'
        end as repair_kind,
        case when interval_hours * 60 <= {{ var('meter_gap_minutes') }} then
            least(
                greatest(coalesce((coalesce(power_w, prev_power_w) + coalesce(prev_power_w, power_w)) / 2.0, 0), 0),
                {{ var('meter_max_kw') }} * 1000.0
            ) * greatest(interval_hours, 0) / 1000.0
        else 0 end as power_estimate_kwh
    from measured
),

resolved as (
    select
        household_id,
        device_id,
        prev_device_id,
        prev_ts_utc,
        ts_utc,
        interval_hours,
        import_delta_kwh,
        repair_kind,
        case
            when repair_kind = 'ok' then import_delta_kwh
            when repair_kind = 'gap' and interval_hours <= {{ var('meter_gap_spread_max_days') }} * 24
                then import_delta_kwh
            when repair_kind = 'gap' then 0
            else power_estimate_kwh
        end as import_kwh,
        case
            when repair_kind in ('ok', 'gap') and export_delta_kwh >= 0
                and export_delta_kwh <= {{ var('meter_max_kw') }} * interval_hours
                and interval_hours <= {{ var('meter_gap_spread_max_days') }} * 24 then export_delta_kwh
            else 0
        end as export_kwh
    from classified
),

-- every interval as one or more pieces: whole intervals, and gaps cut at clock hours
pieces as (
    select
        resolved.*,
        prev_ts_utc as piece_start_utc,
        ts_utc as piece_end_utc,
        true as is_first_piece
    from resolved
    where repair_kind <> 'gap'
    union all
    select
        resolved.*,
        {{ epoch_to_ts('greatest(' ~ epoch_of('prev_ts_utc') ~ ', floor(' ~ epoch_of('prev_ts_utc') ~ ' / 3600) * 3600 + h.i * 3600)') }}
            as piece_start_utc,
        {{ epoch_to_ts('least(' ~ epoch_of('ts_utc') ~ ', floor(' ~ epoch_of('prev_ts_utc') ~ ' / 3600) * 3600 + (h.i + 1) * 3600)') }}
            as piece_end_utc,
        h.i = 0 as is_first_piece
    from resolved
    cross join {{ ref('int_hour_offsets') }} as h
    where
        repair_kind = 'gap'
        and floor({{ epoch_of('prev_ts_utc') }} / 3600) * 3600 + h.i * 3600 < {{ epoch_of('ts_utc') }}
),

located as (
    select
        *,
        {{ to_local_ts('piece_start_utc') }} as interval_start_local,
        {{ hours_between('piece_start_utc', 'piece_end_utc') }} as piece_hours
    from pieces
)

select
    household_id,
    device_id,
    prev_device_id,
    piece_start_utc as interval_start_utc,
    piece_end_utc as interval_end_utc,
    ts_utc as source_interval_end_utc,
    is_first_piece,
    interval_start_local,
    cast(interval_start_local as date) as local_date,
    cast(extract(hour from interval_start_local) as integer) as local_hour,
    {{ tou_band('extract(hour from interval_start_local)') }} as tou_band,
    piece_hours as interval_hours,
    import_delta_kwh * piece_hours / nullif(interval_hours, 0) as register_delta_kwh,
    import_kwh * piece_hours / nullif(interval_hours, 0) as import_kwh,
    export_kwh * piece_hours / nullif(interval_hours, 0) as export_kwh,
    repair_kind,
    repair_kind not in ('ok', 'gap') as was_repaired
from located
{%- if is_incremental() and var('refresh_from', none) %}
where interval_start_local >= {{ refresh_start(0) }}
{%- endif %}
