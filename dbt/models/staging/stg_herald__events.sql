-- One row per event: the pipeline's events, typed, with repeats dropped.
-- A redelivered Pub/Sub message (or a provider callback posted twice) inserts the same event again
-- with the same deterministic event_id (span and status), so analytics keep one row per event_id
-- and day.
--
-- Repeats are found within a UTC day (partition by event_date, event_id): a filter on event_date
-- then reaches through this view to the events table's day partitions, so the incremental
-- int_deliveries reads only recent days. Partitioned by event_id alone, BigQuery would have to
-- read every day of events to deduplicate, whatever the filter. A repeat minutes after midnight
-- of its original stays twice; int_deliveries keeps the earliest time per stage, so it counts
-- such a pair once.

with

source as (

    select * from {{ source('herald', 'events') }}

),

renamed as (

    select
        -- ids
        event_id,
        trace_id,
        span_id,
        parent_span_id,
        notification_id,
        user_id,
        device_id,
        recipient_hash,
        provider_message_id,

        -- what happened
        status,
        reason,
        provider_code,
        detail,
        bounce_type,
        machine_open,

        -- request and delivery attributes
        sender_client,
        service_type,
        category_type,
        template_type,
        channel,
        priority,
        platform,
        provider,
        locale,

        -- registry changes (preference_changed, registry_changed)
        setting,
        value,

        -- timestamps
        cast(event_ts as timestamp) as event_ts,
        cast(accepted_at as timestamp) as accepted_at,
        cast(not_before as timestamp) as not_before,
        date(event_ts) as event_date

    from source

),

deduplicated as (

    select * from renamed
    -- BigQuery wants a WHERE, GROUP BY or HAVING beside QUALIFY.
    where true
    qualify row_number() over (partition by event_date, event_id order by event_ts) = 1

),

final as (

    select * from deduplicated

)

select * from final
