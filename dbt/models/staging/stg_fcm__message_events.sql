-- One row per FCM message event from FCM's BigQuery export (herald/providers/fcm/export.py):
-- typed, with the partition it was loaded into, and whether the event is a rejection.
--
-- The table is partitioned by ingestion time: _PARTITIONTIME, the start of the UTC day a row was
-- loaded, which is days after its event_timestamp at times (the daily export starts at 4:00 AM
-- Pacific and may take 24 hours, the first one 48; backfills reach 30 days back). Incremental
-- readers filter on partition_time, so a row loaded late is still read once it is loaded, and
-- BigQuery scans only the partitions loaded since (the window below is partitioned by it, so the
-- filter reaches the table).
--
-- The export's message_id is the id part of the name FCM's send answered with; Herald keeps the
-- whole name (projects/<project>/messages/<message_id>) as a push's provider_message_id, so
-- int_deliveries joins on message_id against the part after '/messages/'. A message is
-- (message_id, instance_id): FCM says message_id alone might not be globally unique.

with

source as (

    select _PARTITIONTIME as partition_time, *
    from {{ source('fcm_export', 'messages') }}

),

renamed as (

    select
        message_id,
        instance_id,
        event,
        event in ({{ sql_strings(var('fcm_export_rejection_events')) }}) as is_rejection,
        sdk_platform,
        message_type,
        app_name,
        analytics_label,
        priority,
        ttl as ttl_s,
        collapse_key,
        topic,
        bulk_id,
        project_number,
        cast(event_timestamp as timestamp) as event_ts,
        partition_time
    from source
    where message_id is not null and message_id != ''

),

deduplicated as (

    -- A row loaded twice into one partition (a re-run transfer) counts once.
    select * from renamed
    where true
    qualify row_number() over (
        partition by partition_time, message_id, instance_id, event order by event_ts) = 1

)

select * from deduplicated
