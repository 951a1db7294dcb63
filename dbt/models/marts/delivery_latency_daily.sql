-- How long deliveries take per day (of acceptance, UTC) and channel, stage by stage:
-- accepted -> sent (Herald), sent -> delivered (the provider) and accepted -> delivered (end to
-- end), as p50/p95/p99 in milliseconds. The delivered stages count deliveries that ended
-- delivered with a delivered report (an open alone proves delivery but says not when).
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
        accept_to_sent_ms,
        if(final_status = 'delivered', sent_to_delivered_ms, null) as sent_to_delivered_ms,
        if(final_status = 'delivered', accept_to_delivered_ms, null) as accept_to_delivered_ms
    from deliveries
    where sent_at is not null

),

latency as (

    -- APPROX_QUANTILES skips NULLs: the delivered stages are over delivered deliveries only.
    select
        accepted_date,
        channel,
        count(*) as sent,
        approx_quantiles(accept_to_sent_ms, 100) as accept_to_sent,
        cast(countif(accept_to_delivered_ms is not null) as int64) as delivered,
        approx_quantiles(sent_to_delivered_ms, 100) as sent_to_delivered,
        approx_quantiles(accept_to_delivered_ms, 100) as accept_to_delivered
    from sent_deliveries
    group by accepted_date, channel

),

final as (

    -- Subscript the quantile arrays here, not on the aggregate itself: the local emulator
    -- (bqemulator 1.4) reads APPROX_QUANTILES(x, 100)[OFFSET(n)] as OFFSET(n + 1). SAFE_OFFSET:
    -- a channel with no delivered report (push) has NULL percentiles, not an error.
    select
        accepted_date,
        channel,
        sent,
        accept_to_sent[safe_offset(50)] as p50_accept_to_sent_ms,
        accept_to_sent[safe_offset(95)] as p95_accept_to_sent_ms,
        accept_to_sent[safe_offset(99)] as p99_accept_to_sent_ms,
        delivered,
        sent_to_delivered[safe_offset(50)] as p50_sent_to_delivered_ms,
        sent_to_delivered[safe_offset(95)] as p95_sent_to_delivered_ms,
        sent_to_delivered[safe_offset(99)] as p99_sent_to_delivered_ms,
        accept_to_delivered[safe_offset(50)] as p50_accept_to_delivered_ms,
        accept_to_delivered[safe_offset(95)] as p95_accept_to_delivered_ms,
        accept_to_delivered[safe_offset(99)] as p99_accept_to_delivered_ms
    from latency

)

select * from final
