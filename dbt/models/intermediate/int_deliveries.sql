-- One row per delivery: a (channel, address) that a request fanned out to, i.e. one span whose
-- parent is the request's root span, with a timestamp per stage and the status it ended in.
--
-- Two kinds of events describe a delivery:
--   * its terminal event inside Herald (suppressed, duplicate, sent or failed), exactly one per
--     delivery: tests/assert_one_terminal_event_per_delivery.sql checks that on staging. It
--     carries the request's attributes (channel, sender, ...).
--   * FCM's own record of a push (stg_fcm__message_events, from FCM's BigQuery export), matched
--     to the push's sent event by FCM's message id (see fcm_outcomes): MESSAGE_DELIVERED, from
--     apps that enabled delivery data export (var fcm_export_platforms), gives delivered_at and
--     fcm_delivered_at; a rejection event (var fcm_export_rejection_events) is an `undelivered`
--     report with the event as provider_code. FCM itself calls nobody back; a push's callbacks
--     are its app's receipts (provider fcm): receipt_delivered_at.
--   * provider callbacks, later and for sent deliveries only: same span_id, event_ts = when the provider reported it, possibly out of order,
--     no parent or request attributes (herald.events.callback_event). A callback without a
--     span_id (a message sent without Herald's ids) is not attributed: provider_message_id is no
--     substitute, SendGrid's X-Message-Id covers a whole bulk request of up to 1,000 recipients.
-- A delivery may have been held: its request for a sendTime ahead (a `scheduled` event about the
-- request, not_before = sendTime) or the delivery itself (Herald's `deferred` event with
-- not_before: the user's quiet hours, a provider's wait). due_at is the later of accepted_at and
-- those times; the send latency the SLO counts (due_to_sent_ms) starts there, so a notification
-- sent on time after its hold is not a late one. The hold events are read hold_lookback_days
-- back, since they may be older than the events of this run.
-- final_status is the candidate with the highest rank in var('final_status_precedence')
-- (dbt_project.yml): a delivered, bounced, dropped or undelivered report refines `sent`, an open
-- (a person's or a privacy proxy's) or click proves delivery, whatever order the reports came
-- in. An opted_out report (an unsubscribe, a spam report, a STOP) decides nothing; it is dated in
-- opted_out_at.
--
-- Incremental (merge on span_id): a run reads only the events since the newest one it already
-- holds (event_date_watermark), folds them into the stored rows of the deliveries they belong
-- to, and merges the result. Every stage keeps its earliest time and final_status its highest
-- rank, so folding the same event in twice changes nothing. Deliveries accepted before
-- late_callback_window_start() are left as they are until `dbt build --full-refresh`.

{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='span_id',
        partition_by={'field': 'accepted_date', 'data_type': 'date', 'granularity': 'day'},
        cluster_by=['final_status', 'channel'],
        incremental_predicates=[
            'DBT_INTERNAL_DEST.accepted_date >= ' ~ late_callback_window_start()
        ],
        on_schema_change='fail',
    )
}}

with

events as (

    select * from {{ ref('stg_herald__events') }}
    {% if is_incremental() %}
    where event_date >= {{ event_date_watermark() }}
    {% endif %}

),

holds as (

    select trace_id, span_id, parent_span_id, status, not_before
    from {{ ref('stg_herald__events') }}
    where not_before is not null
        and status in ('scheduled', 'deferred')
        {% if is_incremental() %}
        and event_date >= date_sub({{ event_date_watermark() }},
                                   interval {{ var('hold_lookback_days') }} day)
        {% endif %}

),

request_holds as (

    select trace_id, max(not_before) as held_until
    from holds
    where status = 'scheduled'
    group by trace_id

),

delivery_holds as (

    select span_id, max(not_before) as held_until
    from holds
    where status = 'deferred' and parent_span_id is not null
    group by span_id

),

terminal_events as (

    select * from events
    where parent_span_id is not null
        and status in ({{ sql_strings(var('delivery_terminal_statuses')) }})

),

callback_events as (

    select * from events
    where span_id is not null
        and status in ({{ sql_strings(var('callback_statuses')) }})

),

fcm_matches as (

    -- The export's rows about pushes Herald sent, matched by FCM's message id. A push's sent
    -- event may be older than the rows this run reads (the export is loaded up to two days
    -- later, backfills later still), so it is looked up among all sent pushes inside the
    -- late-callback window; the export is read by load partition (partition_time), never by
    -- event time, so a row loaded late is read by the first run after it was loaded.
    select
        sent.span_id,
        fcm.instance_id,
        fcm.event,
        fcm.is_rejection,
        fcm.event_ts
    from {{ ref('stg_fcm__message_events') }} as fcm
    inner join {{ ref('stg_herald__events') }} as sent
        on fcm.message_id = substr(sent.provider_message_id,
                                   strpos(sent.provider_message_id, '/messages/') + 10)
    where sent.status = 'sent'
        and sent.provider = 'fcm'
        {% if is_incremental() %}
        and fcm.partition_time >= timestamp({{ event_date_watermark() }})
        and sent.event_date >= {{ late_callback_window_start() }}
        {% endif %}

),

fcm_outcomes as (

    -- What the export says became of each push: its first MESSAGE_DELIVERED, and the first time
    -- of each rejection event. FCM's message_id might not be globally unique and Herald cannot
    -- join on instance_id (it never learns a device's installation ID), but Herald sends each
    -- message to one token, one app instance: a push whose matched rows name more than one
    -- instance shares its id with another app's message, and none of them is attributed.
    -- Repeated rows change nothing (min).
    select
        span_id,
        event,
        is_rejection,
        min(event_ts) as event_ts
    from fcm_matches
    where span_id not in (
        select span_id from fcm_matches group by span_id having count(distinct instance_id) > 1)
        and (event = 'MESSAGE_DELIVERED' or is_rejection)
    group by span_id, event, is_rejection

),

-- Every event becomes a partial delivery row: the columns it knows, NULL for the rest. The
-- partial rows of a span are folded into one in `folded` and `outcomes`.

terminal_parts as (

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
        device_id,
        provider,
        accepted_at,
        status as terminal_status,
        event_ts as terminal_at,
        provider_message_id,
        cast(null as timestamp) as provider_accepted_at,
        cast(null as timestamp) as delivered_at,
        cast(null as timestamp) as opened_at,
        cast(null as timestamp) as machine_opened_at,
        cast(null as timestamp) as clicked_at,
        cast(null as timestamp) as opted_out_at,
        cast(null as timestamp) as fcm_delivered_at,
        cast(null as timestamp) as receipt_delivered_at,
        {{ status_rank('status') }} as outcome_rank,
        {{ status_outcome('status') }} as outcome,
        event_ts as outcome_at,
        reason,
        provider_code,
        cast(null as string) as bounce_type,
        event_ts as last_event_at
    from terminal_events

),

callback_parts as (

    -- The request's attributes come from the terminal event; a callback may not carry them.
    select
        span_id,
        {{ unknown_request_attributes() }},
        provider_message_id,
        if(status = 'provider_accepted', event_ts, null) as provider_accepted_at,
        if(status = 'delivered', event_ts, null) as delivered_at,
        -- A person's open, and a privacy proxy's fetch (machine_open), apart.
        if(status = 'opened' and not coalesce(machine_open, false), event_ts, null) as opened_at,
        if(status = 'opened' and machine_open, event_ts, null) as machine_opened_at,
        if(status = 'clicked', event_ts, null) as clicked_at,
        if(status = 'opted_out', event_ts, null) as opted_out_at,
        cast(null as timestamp) as fcm_delivered_at,
        -- FCM calls nobody back: a push's callbacks are its app's receipts (herald/receipts.py),
        -- received (delivered) or opened, either of which proves delivery.
        if(provider = 'fcm' and status in ('delivered', 'opened'), event_ts, null)
            as receipt_delivered_at,
        {{ status_rank('status') }} as outcome_rank,
        {{ status_outcome('status') }} as outcome,
        event_ts as outcome_at,
        reason,
        provider_code,
        bounce_type,
        event_ts as last_event_at
    from callback_events

),

fcm_parts as (

    -- FCM's delivered record counts as a `delivered` report of the push; a rejection as an
    -- `undelivered` one, FCM's event its provider_code (FCM refused the message after all).
    select
        span_id,
        {{ unknown_request_attributes() }},
        cast(null as string) as provider_message_id,
        cast(null as timestamp) as provider_accepted_at,
        if(is_rejection, null, event_ts) as delivered_at,
        cast(null as timestamp) as opened_at,
        cast(null as timestamp) as machine_opened_at,
        cast(null as timestamp) as clicked_at,
        cast(null as timestamp) as opted_out_at,
        if(is_rejection, null, event_ts) as fcm_delivered_at,
        cast(null as timestamp) as receipt_delivered_at,
        if(is_rejection, {{ status_rank("'undelivered'") }}, {{ status_rank("'delivered'") }})
            as outcome_rank,
        if(is_rejection, {{ status_outcome("'undelivered'") }}, {{ status_outcome("'delivered'") }})
            as outcome,
        event_ts as outcome_at,
        cast(null as string) as reason,
        if(is_rejection, event, null) as provider_code,
        cast(null as string) as bounce_type,
        event_ts as last_event_at
    from fcm_outcomes

),

{% if is_incremental() %}

touched_spans as (

    select span_id from terminal_parts
    union distinct
    select span_id from callback_parts
    union distinct
    select span_id from fcm_parts

),

stored as (

    -- The stored rows of the deliveries this run's events belong to. A stored `delivered`
    -- decided by an open or click keeps that rank (a later bounce report must not win).
    select
        *,
        if(final_status = 'delivered'
           and coalesce(opened_at, machine_opened_at, clicked_at) is not null,
           'opened', final_status) as stored_as
    from {{ this }}
    where accepted_date >= {{ late_callback_window_start() }}
        and span_id in (select span_id from touched_spans)

),

stored_parts as (

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
        device_id,
        provider,
        accepted_at,
        terminal_status,
        terminal_at,
        provider_message_id,
        provider_accepted_at,
        delivered_at,
        opened_at,
        machine_opened_at,
        clicked_at,
        opted_out_at,
        fcm_delivered_at,
        receipt_delivered_at,
        {{ status_rank('stored_as') }} as outcome_rank,
        {{ status_outcome('stored_as') }} as outcome,
        final_at as outcome_at,
        reason,
        provider_code,
        bounce_type,
        last_event_at
    from stored

),

{% endif %}

parts as (

    select * from terminal_parts
    union all
    select * from callback_parts
    union all
    select * from fcm_parts
    {% if is_incremental() %}
    union all
    select * from stored_parts
    {% endif %}

),

folded as (

    -- Attributes are the same on every part that has them; each stage keeps its earliest time.
    select
        span_id,
        max(trace_id) as trace_id,
        max(notification_id) as notification_id,
        max(user_id) as user_id,
        max(sender_client) as sender_client,
        max(service_type) as service_type,
        max(category_type) as category_type,
        max(template_type) as template_type,
        max(channel) as channel,
        max(priority) as priority,
        max(platform) as platform,
        max(device_id) as device_id,
        max(provider) as provider,
        max(provider_message_id) as provider_message_id,
        min(accepted_at) as accepted_at,
        max(terminal_status) as terminal_status,
        min(terminal_at) as terminal_at,
        min(provider_accepted_at) as provider_accepted_at,
        min(delivered_at) as delivered_at,
        min(opened_at) as opened_at,
        min(machine_opened_at) as machine_opened_at,
        min(clicked_at) as clicked_at,
        min(opted_out_at) as opted_out_at,
        min(fcm_delivered_at) as fcm_delivered_at,
        min(receipt_delivered_at) as receipt_delivered_at,
        max(last_event_at) as last_event_at
    from parts
    group by span_id

),

outcomes as (

    -- The winning candidate: highest rank, then the earliest report of it.
    select
        span_id,
        outcome as final_status,
        outcome_at as final_at,
        reason,
        provider_code,
        bounce_type
    from parts
    where outcome_rank is not null
    qualify row_number() over (
        partition by span_id order by outcome_rank desc, outcome_at, outcome) = 1

),

joined as (

    -- A span with callbacks but no terminal event yet is not a delivery (yet): the callbacks
    -- are read again by the next run, within event_lookback_days.
    select
        folded.*,
        if(folded.terminal_status = 'sent', folded.terminal_at, null) as sent_at,
        greatest(folded.accepted_at,
                 coalesce(request_holds.held_until, folded.accepted_at),
                 coalesce(delivery_holds.held_until, folded.accepted_at)) as due_at,
        outcomes.final_status,
        outcomes.final_at,
        outcomes.reason,
        outcomes.provider_code,
        outcomes.bounce_type
    from folded
    inner join outcomes
        on folded.span_id = outcomes.span_id
    left join request_holds
        on folded.trace_id = request_holds.trace_id
    left join delivery_holds
        on folded.span_id = delivery_holds.span_id
    where folded.terminal_status is not null

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
        device_id,
        provider,
        provider_message_id,
        date(accepted_at) as accepted_date,
        accepted_at,
        due_at,
        sent_at,
        provider_accepted_at,
        delivered_at,
        opened_at,
        machine_opened_at,
        clicked_at,
        opted_out_at,
        fcm_delivered_at,
        receipt_delivered_at,
        terminal_status,
        terminal_at,
        final_status,
        final_at,
        reason,
        provider_code,
        bounce_type,
        timestamp_diff(sent_at, accepted_at, millisecond) as accept_to_sent_ms,
        timestamp_diff(delivered_at, sent_at, millisecond) as sent_to_delivered_ms,
        timestamp_diff(delivered_at, accepted_at, millisecond) as accept_to_delivered_ms,
        timestamp_diff(sent_at, due_at, millisecond) as due_to_sent_ms,
        timestamp_diff(delivered_at, due_at, millisecond) as due_to_delivered_ms,
        timestamp_diff(sent_at, due_at, millisecond) <= {{ var('send_slo_ms') }}
            as sent_within_slo,
        last_event_at
    from joined

)

select * from final
