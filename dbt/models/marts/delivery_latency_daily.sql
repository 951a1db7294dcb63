-- How long deliveries take per day (of acceptance, UTC) and channel, stage by stage:
-- due -> sent (Herald), sent -> delivered (the provider) and due -> delivered (end to end), as
-- p50/p95/p99 in milliseconds. Due is int_deliveries.due_at: the later of the request's
-- acceptance and the sendTime or deferral it was held for, so a scheduled send is not a late
-- one. The delivered stages count deliveries that ended delivered with a delivered report (an
-- open alone proves delivery but says not when).
--
-- Incremental like delivery_outcomes_daily: percentiles do not add up, so a run recomputes the
-- days int_deliveries can still change and merges them.

{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['accepted_date', 'channel'],
        partition_by={'field': 'accepted_date', 'data_type': 'date', 'granularity': 'day'},
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

sent_deliveries as (

    select
        accepted_date,
        channel,
        due_to_sent_ms,
        if(final_status = 'delivered', sent_to_delivered_ms, null) as sent_to_delivered_ms,
        if(final_status = 'delivered', due_to_delivered_ms, null) as due_to_delivered_ms
    from deliveries
    where sent_at is not null

),

counts as (

    select
        accepted_date,
        channel,
        count(*) as sent,
        cast(countif(due_to_delivered_ms is not null) as int64) as delivered
    from sent_deliveries
    group by accepted_date, channel

),

percentiles as (

    -- NULLs are ignored: the delivered stages are over delivered deliveries only.
    select distinct
        accepted_date,
        channel,
        {{ exact_percentiles('due_to_sent_ms', ['accepted_date', 'channel'], 'due_to_sent') }},
        {{ exact_percentiles('sent_to_delivered_ms', ['accepted_date', 'channel'], 'sent_to_delivered') }},
        {{ exact_percentiles('due_to_delivered_ms', ['accepted_date', 'channel'], 'due_to_delivered') }}
    from sent_deliveries

),

final as (

    select
        counts.accepted_date,
        counts.channel,
        counts.sent,
        percentiles.p50_due_to_sent_ms,
        percentiles.p95_due_to_sent_ms,
        percentiles.p99_due_to_sent_ms,
        counts.delivered,
        percentiles.p50_sent_to_delivered_ms,
        percentiles.p95_sent_to_delivered_ms,
        percentiles.p99_sent_to_delivered_ms,
        percentiles.p50_due_to_delivered_ms,
        percentiles.p95_due_to_delivered_ms,
        percentiles.p99_due_to_delivered_ms
    from counts
    inner join percentiles
        on counts.accepted_date = percentiles.accepted_date
        and counts.channel = percentiles.channel

)

select * from final
