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
        cast(countif(final_status = 'delivered') as int64) as delivered,
        cast(countif(final_status = 'undelivered') as int64) as undelivered,
        cast(countif(final_status = 'bounced') as int64) as bounced,
        cast(countif(final_status = 'dropped') as int64) as dropped,
        -- A click without an open (images blocked) is an open too; neither counts unless the
        -- delivery ended delivered, so the funnel only narrows.
        cast(countif(final_status = 'delivered'
                     and coalesce(opened_at, clicked_at) is not null) as int64) as opened,
        cast(countif(final_status = 'delivered' and clicked_at is not null) as int64) as clicked,
        max(last_event_at) as last_event_at
    from deliveries
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
        delivered,
        undelivered,
        bounced,
        dropped,
        opened,
        clicked,
        -- NULL, not 0, when nothing was eligible: no attempt is not a failed attempt.
        safe_divide(sent, deliveries - suppressed - duplicate) as delivery_rate,
        -- NULL for providers that send no delivery receipts (FCM): unknown is not undelivered.
        if(provider in ({{ sql_strings(var('providers_without_delivery_receipts')) }}),
           null, safe_divide(delivered, sent)) as confirmed_delivery_rate,
        last_event_at
    from daily

)

select * from final
