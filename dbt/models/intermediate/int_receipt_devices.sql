-- Devices whose app sends receipts (herald/receipts.py): one row per (user_id, device_id) that
-- has posted at least one for a push. A push to such a device is one a source could have
-- confirmed (macro delivery_confirmable), whatever its platform.

select distinct
    user_id,
    device_id
from {{ ref('int_deliveries') }}
where receipt_delivered_at is not null
    and device_id is not null
