-- 0, 1, … hour offsets covering the longest gap that is spread over clock hours
-- (meter_gap_spread_max_days); int_meter_intervals_differenced cuts gaps into hour pieces with it.
select cast(i as integer) as i
from generate_series(0, {{ var('meter_gap_spread_max_days') }} * 24) as t(i)
