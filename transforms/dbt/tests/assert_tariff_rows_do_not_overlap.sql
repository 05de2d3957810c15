-- Two rows of the same tariff item in force on the same day would make a bill ambiguous
-- (hems.domain.tariff raises on it; SQL would silently pick one), so overlaps fail the build.
{% set items = [
    ('tariff_kepco_residential_low_voltage', ['tariff_code', 'season', 'block']),
    ('tariff_kepco_residential_seasons', ['tariff_code', 'month_of_year']),
    ('tariff_kepco_surcharges', ['tariff_code', 'component']),
] %}
{% for seed, keys in items %}
select '{{ seed }}' as seed, a.effective_from, b.effective_from as overlapping_from
from {{ ref(seed) }} as a
inner join {{ ref(seed) }} as b
    on
        {% for k in keys %}a.{{ k }} = b.{{ k }} and {% endfor %}a.effective_from < b.effective_from
        and (a.effective_to is null or a.effective_to >= b.effective_from)
{% if not loop.last %}union all{% endif %}
{% endfor %}
