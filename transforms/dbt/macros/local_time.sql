{#- Household-local time (DESIGN §5: a household's day is its local calendar day in var hems_timezone).
    The zone is Asia/Seoul, which has had no daylight-saving time since 1988, so local time is UTC plus
    the fixed offset var local_utc_offset_hours (9). The macros below add that offset instead of
    running a time-zone conversion (`AT TIME ZONE`, ICU on DuckDB: ~30× slower per row) on tens of
    millions of readings; the singular test assert_local_utc_offset_matches_timezone checks, for every
    hour of the landed readings, that the offset equals the zone's. A zone with DST would need the
    `AT TIME ZONE` form back (to_local_ts_by_zone). -#}

{#- The fixed offset in whole seconds (a Jinja number, for inlining into SQL). -#}
{% macro local_offset_seconds() -%}
    {%- set hours = var('local_utc_offset_hours') -%}
    {{- (hours * 3600) | round | int -}}
{%- endmacro %}

{#- Convert a UTC timestamptz to a naive local timestamp (fixed offset). Dialect macros: DuckDB's
    make_timestamp on epoch microseconds avoids ICU; PostgreSQL's UTC conversion is cheap. -#}
{% macro to_local_ts(column) -%}
    {{ return(adapter.dispatch('to_local_ts')(column)) }}
{%- endmacro %}

{% macro default__to_local_ts(column) -%}
    (({{ column }} at time zone 'UTC') + interval '{{ local_offset_seconds() }} seconds')
{%- endmacro %}

{% macro duckdb__to_local_ts(column) -%}
    make_timestamp(epoch_us({{ column }}) + {{ local_offset_seconds() }}000000)
{%- endmacro %}

{#- The same conversion through the zone's rules (the reference the fixed offset is tested against). -#}
{% macro to_local_ts_by_zone(column) -%}
    ({{ column }} at time zone '{{ var("hems_timezone") }}')
{%- endmacro %}

{#- Naive local timestamp of an epoch in seconds (double), the same text on DuckDB and PostgreSQL. -#}
{% macro epoch_to_local_ts(seconds) -%}
    (to_timestamp({{ seconds }} + {{ local_offset_seconds() }}) at time zone 'UTC')
{%- endmacro %}

{#- Local calendar day, local hour (0–23) and local clock-hour number (hours since 1970-01-01 00:00
    local) of an epoch in seconds: integer arithmetic, no time-zone conversion. -#}
{% macro epoch_local_date(seconds) -%}
    (date '1970-01-01' + cast(floor(({{ seconds }} + {{ local_offset_seconds() }}) / 86400.0) as integer))
{%- endmacro %}

{% macro epoch_local_hour_number(seconds) -%}
    cast(floor(({{ seconds }} + {{ local_offset_seconds() }}) / 3600.0) as bigint)
{%- endmacro %}

{% macro epoch_local_hour(seconds) -%}
    cast(
        floor(({{ seconds }} + {{ local_offset_seconds() }}) / 3600.0)
        - 24 * floor(({{ seconds }} + {{ local_offset_seconds() }}) / 86400.0)
        as integer
    )
{%- endmacro %}

{#- Residential TOU band of a local hour (Jeju bands as default, DESIGN §5). -#}
{% macro tou_band(local_hour) -%}
    case
        when {{ local_hour }} >= 16 and {{ local_hour }} < 22 then 'peak'
        when {{ local_hour }} >= 8 and {{ local_hour }} < 16 then 'mid'
        else 'off_peak'
    end
{%- endmacro %}

{#- Hours between two timestamptz values (b after a), as a double; same text on both dialects. -#}
{#- (From epochs: subtracting two timestamptz goes through calendar arithmetic, several times slower
    on DuckDB over tens of millions of rows.) -#}
{% macro hours_between(a, b) -%}
    ((extract(epoch from {{ b }}) - extract(epoch from {{ a }})) / 3600.0)
{%- endmacro %}

{#- Local midnight `days` before var refresh_from (YYYY-MM-DD), as a naive local timestamp. -#}
{% macro refresh_start(days) -%}
    cast({{ refresh_date(days) }} as timestamp)
{%- endmacro %}

{#- The local date `days` before var refresh_from (YYYY-MM-DD). -#}
{% macro refresh_date(days) -%}
    {%- set day = var('refresh_from') | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', day) -%}
        {{ exceptions.raise_compiler_error("var refresh_from must be a local date YYYY-MM-DD, got " ~ day) }}
    {%- endif -%}
    (cast('{{ day }}' as date) - {{ days | int }})
{%- endmacro %}

{#- Seconds since 1970 of a timestamptz (double precision on both: PostgreSQL's `extract` returns
    numeric, slow to sort and sum over every reading; `date_part` returns double), and back; the same
    text on DuckDB and PostgreSQL. -#}
{% macro epoch_of(ts) -%}
    date_part('epoch', {{ ts }})
{%- endmacro %}

{% macro epoch_to_ts(seconds) -%}
    to_timestamp({{ seconds }})
{%- endmacro %}
