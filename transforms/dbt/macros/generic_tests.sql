{#- Generic test: the combination of columns is unique (no dbt_utils needed offline). -#}
{% test dbt_utils_free_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Generic test: every row satisfies `<column> <expression>` (e.g. ">= 0"). -#}
{% test dbt_utils_free_expression_is_true(model, column_name, expression) %}
select *
from {{ model }}
where not ({{ column_name }} {{ expression }})
{% endtest %}
