{#- Session settings for the heavy models, as a pre-hook (run inside the model's transaction).
    PostgreSQL: the window over every meter reading sorts tens of millions of rows; the server's
    default work_mem (4 MB) makes that sort and the hourly hash aggregate spill to disk in many
    passes. `set local` lasts for the model's transaction only. DuckDB needs nothing (threads and
    memory come from the profile); an empty hook is skipped by dbt. -#}
{% macro warehouse_session_settings() -%}
    {{ return(adapter.dispatch('warehouse_session_settings')()) }}
{%- endmacro %}

{% macro default__warehouse_session_settings() -%}
{%- endmacro %}

{% macro postgres__warehouse_session_settings() -%}
    set local work_mem = '{{ var("postgres_work_mem") }}';
    set local jit = off
{%- endmacro %}
