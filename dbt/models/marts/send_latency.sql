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

counts as (

    select
        channel,
        count(*) as sent,
        max(accept_to_sent_ms) as max_accept_to_sent_ms
    from sent_deliveries
    group by channel

),

percentiles as (

    select distinct
        channel,
        {{ exact_percentiles('accept_to_sent_ms', ['channel'], 'accept_to_sent') }}
    from sent_deliveries

),

final as (

    select
        counts.channel,
        counts.sent,
        percentiles.p50_accept_to_sent_ms,
        percentiles.p95_accept_to_sent_ms,
        percentiles.p99_accept_to_sent_ms,
        counts.max_accept_to_sent_ms
    from counts
    inner join percentiles on counts.channel = percentiles.channel

)

select * from final
