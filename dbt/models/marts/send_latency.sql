-- How long a delivery takes from the HTTP edge accepting the request to the provider accepting
-- the message, per channel, over every delivery Herald handed to its provider (whatever the
-- provider reported later). delivery_latency_daily has the same per day, and the later stages.

with

deliveries as (

    select * from {{ ref('int_deliveries') }}

),

sent_deliveries as (

    select
        channel,
        accept_to_sent_ms
    from deliveries
    where sent_at is not null

),

latency as (

    select
        channel,
        count(*) as sent,
        approx_quantiles(accept_to_sent_ms, 100) as percentiles,
        max(accept_to_sent_ms) as max_accept_to_sent_ms
    from sent_deliveries
    group by channel

),

final as (

    -- Subscript the quantile array here, not on the aggregate itself: the local emulator
    -- (bqemulator 1.4) reads APPROX_QUANTILES(x, 100)[OFFSET(n)] as OFFSET(n + 1). Same result
    -- on BigQuery either way.
    select
        channel,
        sent,
        percentiles[offset(50)] as p50_accept_to_sent_ms,
        percentiles[offset(95)] as p95_accept_to_sent_ms,
        percentiles[offset(99)] as p99_accept_to_sent_ms,
        max_accept_to_sent_ms
    from latency

)

select * from final
