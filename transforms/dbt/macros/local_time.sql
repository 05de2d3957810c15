{#- Convert a UTC timestamptz to a naive local timestamp in the household time zone. Same SQL text
    on DuckDB (ICU) and PostgreSQL, kept in one macro so a dialect difference has one home. -#}
{% macro to_local_ts(column) -%}
    ({{ column }} at time zone '{{ var("hems_timezone") }}')
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
    {%- set day = var('refresh_from') | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', day) -%}
        {{ exceptions.raise_compiler_error("var refresh_from must be a local date YYYY-MM-DD, got " ~ day) }}
    {%- endif -%}
    cast(cast('{{ day }}' as date) - {{ days | int }} as timestamp)
{%- endmacro %}

{#- Seconds since 1970 of a timestamptz, and back; the same text on DuckDB and PostgreSQL. -#}
{% macro epoch_of(ts) -%}
    extract(epoch from {{ ts }})
{%- endmacro %}

{% macro epoch_to_ts(seconds) -%}
    to_timestamp({{ seconds }})
{%- endmacro %}
