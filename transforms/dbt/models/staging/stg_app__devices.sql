-- The device inventory (what each household is expected to report from).
select device_id, household_id, device_type, protocol, manufacturer, model
from {{ source('raw', 'devices') }}
