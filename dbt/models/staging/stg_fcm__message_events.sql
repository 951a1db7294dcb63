-- One row per FCM message event from FCM's BigQuery export (herald/providers/fcm/export.py):
-- typed, repeats dropped, with the id Herald's sent events carry the message by.
--
-- The export's message_id is the id part of the name FCM's send answered with; Herald keeps the
-- whole name (projects/<project>/messages/<message_id>) as a push's provider_message_id, so
-- int_deliveries joins on message_id against the part after '/messages/'.

with

source as (

    select * from {{ source('fcm_export', 'messages') }}

),

renamed as (

    select
        message_id,
        instance_id,
        event,
        sdk_platform,
        message_type,
        app_name,
        analytics_label,
        priority,
        cast(event_timestamp as timestamp) as event_ts,
        date(event_timestamp) as event_date
    from source
    where message_id is not null

),

deduplicated as (

    select * from renamed
    where true
    qualify row_number() over (partition by event_date, message_id, event order by event_ts) = 1

)

select * from deduplicated
