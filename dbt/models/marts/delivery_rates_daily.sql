-- Delivery outcomes per day (of acceptance, UTC) and channel, and the share of eligible
-- deliveries that went out: delivery_outcomes_daily summed over provider, category and sender.

with

outcomes as (

    select * from {{ ref('delivery_outcomes_daily') }}

),

daily as (

    -- SUM of INT64 is INT64 on BigQuery; the emulator widens it, hence the casts.
    select
        accepted_date,
        channel,
        cast(sum(deliveries) as int64) as deliveries,
        cast(sum(sent) as int64) as sent,
        cast(sum(failed) as int64) as failed,
        cast(sum(suppressed) as int64) as suppressed,
        cast(sum(duplicate) as int64) as duplicate,
        cast(sum(delivered) as int64) as delivered,
        cast(sum(undelivered) as int64) as undelivered,
        cast(sum(bounced) as int64) as bounced,
        cast(sum(hard_bounced) as int64) as hard_bounced,
        cast(sum(blocked) as int64) as blocked,
        cast(sum(dropped) as int64) as dropped,
        cast(sum(opened) as int64) as opened,
        cast(sum(machine_opened) as int64) as machine_opened,
        cast(sum(clicked) as int64) as clicked,
        cast(sum(opted_out) as int64) as opted_out,
        -- Sends a source could have confirmed (delivery_outcomes_daily.confirmable).
        cast(sum(confirmable) as int64) as confirmable
    from outcomes
    group by accepted_date, channel

),

final as (

    select
        accepted_date,
        channel,
        deliveries,
        sent,
        failed,
        suppressed,
        duplicate,
        deliveries - suppressed - duplicate as eligible,
        -- NULL, not 0, when nothing was eligible: no attempt is not a failed attempt.
        safe_divide(sent, deliveries - suppressed - duplicate) as delivery_rate,
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
        confirmable,
        safe_divide(delivered, confirmable) as confirmed_delivery_rate
    from daily

)

select * from final
