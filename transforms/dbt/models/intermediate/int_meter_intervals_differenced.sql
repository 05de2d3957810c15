-- Energy per meter interval from cumulative register deltas, repaired (DESIGN §5: registers, not
-- power; never a negative or spiked day; every repair recorded), summed per meter and local hour.
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
-- Grain (rows reduced early, in this one query): the `ok` intervals of a meter are summed per local
-- clock hour they start in (one row, interval_count of them; interval_start_utc is the first one's
-- start, interval_end_utc and source_interval_end_utc the last one's end); every other interval keeps
-- a row of its own (a gap one per hour piece). At 1-minute readings that is 60 intervals per row, so
-- a month of a 1,000-home fleet is ~0.7 M rows instead of 43 M. Sums per hour or day (the marts, the
-- incentive inputs) are the same as over single intervals; per-interval detail of every repair is kept.
--
-- Time is handled as epoch seconds through the window and the classification; local day and hour
-- come from the fixed UTC offset (macros/local_time.sql), timestamps are formed only on the small
-- aggregated result.
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
    pre_hook="{{ warehouse_session_settings() }}",
) }}
{%- set max_kw = var('meter_max_kw') %}
with meter as (
    -- only the columns the window needs (ids, epoch seconds, the two registers and power)
    select
        household_id,
        device_id,
        {{ epoch_of('ts_utc') }} as ts_s,
        energy_import_kwh,
        energy_export_kwh,
        power_w
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
        ts_s,
        energy_import_kwh,
        energy_export_kwh,
        power_w,
        lag(device_id) over w as prev_device_id,
        lag(ts_s) over w as prev_ts_s,
        lag(energy_import_kwh) over w as prev_import_kwh,
        lag(energy_export_kwh) over w as prev_export_kwh,
        lag(power_w) over w as prev_power_w
    from meter
    window w as (partition by household_id order by ts_s, device_id)
),

measured as (
    select
        *,
        energy_import_kwh - prev_import_kwh as import_delta_kwh,
        coalesce(energy_export_kwh - prev_export_kwh, 0) as export_delta_kwh,
        (ts_s - prev_ts_s) / 3600.0 as interval_hours
    from lagged
    where prev_ts_s is not null
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
                or import_delta_kwh > {{ max_kw }} * interval_hours then 'spike'
            when interval_hours * 60 > {{ var('meter_gap_minutes') }} then 'gap'
            else 'ok'
        end as repair_kind
    from measured
),

resolved as (
    select
        household_id,
        device_id,
        prev_device_id,
        prev_ts_s,
        ts_s,
        interval_hours,
        import_delta_kwh,
        repair_kind,
        case
            when repair_kind = 'ok' then import_delta_kwh
            when repair_kind = 'gap' and interval_hours <= {{ var('meter_gap_spread_max_days') }} * 24
                then import_delta_kwh
            when repair_kind = 'gap' then 0
            when interval_hours * 60 <= {{ var('meter_gap_minutes') }} then
                least(
                    greatest(coalesce((coalesce(power_w, prev_power_w) + coalesce(prev_power_w, power_w)) / 2.0, 0), 0),
                    {{ max_kw }} * 1000.0
                ) * greatest(interval_hours, 0) / 1000.0
            else 0
        end as import_kwh,
        case
            when repair_kind in ('ok', 'gap') and export_delta_kwh >= 0
                and export_delta_kwh <= {{ max_kw }} * interval_hours
                and interval_hours <= {{ var('meter_gap_spread_max_days') }} * 24 then export_delta_kwh
            else 0
        end as export_kwh
    from classified
),

-- ok intervals summed per meter and local clock hour; every other interval stays its own row
-- (a gap whole: it is cut into hour pieces below, on this small result)
hourly as (
    select
        household_id,
        device_id,
        max(prev_device_id) as prev_device_id,
        min(prev_ts_s) as start_s,
        max(ts_s) as end_s,
        repair_kind,
        sum(interval_hours) as interval_hours,
        -- a gap is scaled per piece below; a whole interval as the pieces were (x * h / h, null if h = 0)
        sum(case when repair_kind = 'gap' then import_delta_kwh
            else import_delta_kwh * interval_hours / nullif(interval_hours, 0) end) as register_delta_kwh,
        sum(case when repair_kind = 'gap' then import_kwh
            else import_kwh * interval_hours / nullif(interval_hours, 0) end) as import_kwh,
        sum(case when repair_kind = 'gap' then export_kwh
            else export_kwh * interval_hours / nullif(interval_hours, 0) end) as export_kwh,
        cast(count(*) as integer) as interval_count
    from resolved
    group by
        household_id,
        device_id,
        repair_kind,
        {{ epoch_local_hour_number('prev_ts_s') }},
        case when repair_kind = 'ok' then null else ts_s end
),

-- every row as one or more pieces: whole rows, and gaps cut at clock hours
pieces as (
    select
        hourly.*,
        start_s as piece_start_s,
        end_s as piece_end_s,
        true as is_first_piece
    from hourly
    where repair_kind <> 'gap'
    union all
    select
        hourly.*,
        greatest(start_s, floor(start_s / 3600) * 3600 + h.i * 3600) as piece_start_s,
        least(end_s, floor(start_s / 3600) * 3600 + (h.i + 1) * 3600) as piece_end_s,
        h.i = 0 as is_first_piece
    from hourly
    cross join {{ ref('int_hour_offsets') }} as h
    where
        repair_kind = 'gap'
        and floor(start_s / 3600) * 3600 + h.i * 3600 < end_s
),

located as (
    select
        *,
        case when repair_kind = 'gap' then (piece_end_s - piece_start_s) / 3600.0 else interval_hours end
            as piece_hours,
        {{ epoch_local_hour('piece_start_s') }} as local_hour
    from pieces
)

select
    household_id,
    device_id,
    prev_device_id,
    {{ epoch_to_ts('piece_start_s') }} as interval_start_utc,
    {{ epoch_to_ts('piece_end_s') }} as interval_end_utc,
    {{ epoch_to_ts('end_s') }} as source_interval_end_utc,
    is_first_piece,
    {{ epoch_to_local_ts('piece_start_s') }} as interval_start_local,
    {{ epoch_local_date('piece_start_s') }} as local_date,
    local_hour,
    {{ tou_band('local_hour') }} as tou_band,
    piece_hours as interval_hours,
    case when repair_kind = 'gap' then register_delta_kwh * piece_hours / nullif(interval_hours, 0)
        else register_delta_kwh end as register_delta_kwh,
    case when repair_kind = 'gap' then import_kwh * piece_hours / nullif(interval_hours, 0)
        else import_kwh end as import_kwh,
    case when repair_kind = 'gap' then export_kwh * piece_hours / nullif(interval_hours, 0)
        else export_kwh end as export_kwh,
    repair_kind,
    repair_kind not in ('ok', 'gap') as was_repaired,
    interval_count
from located
{%- if is_incremental() and var('refresh_from', none) %}
where {{ epoch_local_date('piece_start_s') }} >= {{ refresh_date(0) }}
{%- endif %}
