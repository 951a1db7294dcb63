-- One row per delivery: a (channel, address) that a request fanned out to, i.e. one span whose
-- parent is the request's root span, with the terminal status it ended in.
--
-- Every delivery ends in exactly one terminal event (suppressed, duplicate, sent or failed);
-- tests/assert_one_terminal_event_per_delivery.sql checks that on staging, so picking one here
-- never hides a second one.
--
-- Later: provider callbacks (delivered, opened, clicked, bounced, ...) arrive keyed by
-- provider_message_id. Add a `callbacks` CTE aggregating them per provider_message_id
-- (min(if(status = 'delivered', event_ts, null)) as delivered_at, ...) and left join it in
-- `joined` on provider_message_id; the grain stays one row per span.

with

events as (

    select * from {{ ref('stg_herald__events') }}

),

delivery_events as (

    select * from events
    where parent_span_id is not null

),

deliveries as (

    -- The request attributes every event of a delivery carries, from its first event.
    select
        span_id,
        trace_id,
        notification_id,
        user_id,
        sender_client,
        service_type,
        category_type,
        template_type,
        channel,
        priority,
        platform,
        provider,
        accepted_at
    from delivery_events
    where true
    qualify row_number() over (partition by span_id order by event_ts, event_id) = 1

),

terminal_events as (

    select
        span_id,
        status as final_status,
        event_ts as final_at,
        reason,
        provider_code,
        provider_message_id
    from delivery_events
    where status in ('suppressed', 'duplicate', 'sent', 'failed')
    qualify row_number() over (partition by span_id order by event_ts desc, event_id) = 1

),

joined as (

    select
        deliveries.*,
        terminal_events.final_status,
        terminal_events.reason,
        terminal_events.provider_code,
        terminal_events.provider_message_id,
        if(terminal_events.final_status = 'sent', terminal_events.final_at, null) as sent_at
    from deliveries
    left join terminal_events
        on deliveries.span_id = terminal_events.span_id

),

final as (

    select
        span_id,
        trace_id,
        notification_id,
        user_id,
        sender_client,
        service_type,
        category_type,
        template_type,
        channel,
        priority,
        platform,
        provider,
        accepted_at,
        sent_at,
        final_status,
        reason,
        provider_code,
        provider_message_id,
        timestamp_diff(sent_at, accepted_at, millisecond) as accept_to_sent_ms
    from joined

)

select * from final
