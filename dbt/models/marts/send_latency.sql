-- How long a delivery takes from being due to the provider accepting the message, per channel,
-- over every delivery Herald handed to its provider (whatever the provider reported later). Due
-- is int_deliveries.due_at: the later of the request's acceptance and the sendTime or deferral it
-- was held for, so a scheduled send made on time is not a late one (the SLO counts the same,
-- send_slo_daily). delivery_latency_daily has the same per day, and the later stages.

with

deliveries as (

    select * from {{ ref('int_deliveries') }}

),

sent_deliveries as (

    select
        channel,
        due_to_sent_ms
    from deliveries
    where sent_at is not null

),

counts as (

    select
        channel,
        count(*) as sent,
        max(due_to_sent_ms) as max_due_to_sent_ms
    from sent_deliveries
    group by channel

),

percentiles as (

    select distinct
        channel,
        {{ exact_percentiles('due_to_sent_ms', ['channel'], 'due_to_sent') }}
    from sent_deliveries

),

final as (

    select
        counts.channel,
        counts.sent,
        percentiles.p50_due_to_sent_ms,
        percentiles.p95_due_to_sent_ms,
        percentiles.p99_due_to_sent_ms,
        counts.max_due_to_sent_ms
    from counts
    inner join percentiles on counts.channel = percentiles.channel

)

select * from final
