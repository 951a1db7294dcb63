-- What became of every delivery, per day (of acceptance, UTC), channel, provider, category and
-- sending client: the daily fact the other delivery marts roll up.
--
-- Incremental (merge on the five keys): a run recomputes the days int_deliveries can still
-- change (late_callback_window_start() onwards) and merges them; older days stay as they are.

{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['accepted_date', 'channel', 'provider', 'category_type', 'sender_client'],
        partition_by={'field': 'accepted_date', 'data_type': 'date', 'granularity': 'day'},
        cluster_by=['channel', 'provider'],
        incremental_predicates=[
            'DBT_INTERNAL_DEST.accepted_date >= ' ~ late_callback_window_start()
        ],
        on_schema_change='fail',
    )
}}

with

deliveries as (

    select * from {{ ref('int_deliveries') }}
    {% if is_incremental() %}
    where accepted_date >= {{ late_callback_window_start() }}
    {% endif %}

),

classified as (

    -- Whether a source could have confirmed the delivery: the rest are unknown, not undelivered.
    select
        deliveries.*,
        {{ delivery_confirmable('deliveries', 'receipt_devices') }} as source_could_confirm
    from deliveries
    left join {{ ref('int_receipt_devices') }} as receipt_devices
        on deliveries.user_id = receipt_devices.user_id
        and deliveries.device_id = receipt_devices.device_id

),

daily as (

    -- The casts are no-ops on BigQuery (COUNTIF is INT64); the local emulator types COUNTIF
    -- as NUMERIC, which notebooks would read as Decimal.
    select
        accepted_date,
        channel,
        provider,
        category_type,
        sender_client,
        count(*) as deliveries,
        cast(countif(final_status = 'suppressed') as int64) as suppressed,
        cast(countif(final_status = 'suppressed' and reason = 'frequency_capped') as int64)
            as frequency_capped,
        cast(countif(due_at > accepted_at) as int64) as held,
        cast(countif(final_status = 'duplicate') as int64) as duplicate,
        cast(countif(final_status = 'failed') as int64) as failed,
        cast(countif(sent_at is not null) as int64) as sent,
        cast(countif(sent_within_slo) as int64) as sent_within_slo,
        cast(countif(sent_at is not null and source_could_confirm) as int64) as confirmable,
        cast(countif(final_status = 'delivered') as int64) as delivered,
        cast(countif(final_status = 'undelivered') as int64) as undelivered,
        cast(countif(final_status = 'bounced') as int64) as bounced,
        -- SendGrid's bounce (permanent: a hard bounce) and blocked (for now: a soft bounce).
        cast(countif(final_status = 'bounced' and bounce_type = 'bounce') as int64)
            as hard_bounced,
        cast(countif(final_status = 'bounced' and bounce_type = 'blocked') as int64) as blocked,
        cast(countif(final_status = 'dropped') as int64) as dropped,
        -- A click without an open (images blocked) is an open too; neither counts unless the
        -- delivery ended delivered, so the funnel only narrows. An open by a privacy proxy
        -- (machine_opened_at) is not a person's: those deliveries count as machine_opened.
        cast(countif(final_status = 'delivered'
                     and coalesce(opened_at, clicked_at) is not null) as int64) as opened,
        cast(countif(final_status = 'delivered' and machine_opened_at is not null
                     and coalesce(opened_at, clicked_at) is null) as int64) as machine_opened,
        cast(countif(final_status = 'delivered' and clicked_at is not null) as int64) as clicked,
        cast(countif(opted_out_at is not null) as int64) as opted_out,
        -- Push deliveries by the source that confirmed them (both, for some Android pushes).
        cast(countif(fcm_delivered_at is not null) as int64) as delivered_fcm_export,
        cast(countif(receipt_delivered_at is not null) as int64) as delivered_app_receipt,
        max(last_event_at) as last_event_at
    from classified
    group by accepted_date, channel, provider, category_type, sender_client

),

final as (

    select
        accepted_date,
        channel,
        provider,
        category_type,
        sender_client,
        deliveries,
        suppressed,
        frequency_capped,
        held,
        duplicate,
        deliveries - suppressed - duplicate as eligible,
        failed,
        sent,
        sent_within_slo,
        confirmable,
        delivered,
        undelivered,
        bounced,
        hard_bounced,
        blocked,
        dropped,
        opened,
        machine_opened,
        clicked,
        opted_out,
        delivered_fcm_export,
        delivered_app_receipt,
        -- NULL, not 0, when nothing was eligible: no attempt is not a failed attempt.
        safe_divide(sent, deliveries - suppressed - duplicate) as delivery_rate,
        -- Of the sends a source could have confirmed: unknown is not undelivered.
        safe_divide(delivered, confirmable) as confirmed_delivery_rate,
        last_event_at
    from daily

)

select * from final
