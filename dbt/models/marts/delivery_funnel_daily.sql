-- The delivery funnel per day (of acceptance, UTC) and channel: requested -> eligible -> sent ->
-- delivered -> opened -> clicked. Each step is a subset of the one before. opened counts people;
-- machine_opened, beside the funnel, the delivered messages only a privacy proxy opened;
-- delivery_unknown, beside it too, the sends no source could have confirmed (a push to an iOS or
-- web device whose app sends no receipts): not undelivered, unknown.

with

outcomes as (

    select * from {{ ref('delivery_outcomes_daily') }}

),

final as (

    select
        accepted_date,
        channel,
        cast(sum(deliveries) as int64) as requested,
        cast(sum(eligible) as int64) as eligible,
        cast(sum(sent) as int64) as sent,
        cast(sum(delivered) as int64) as delivered,
        cast(sum(opened) as int64) as opened,
        cast(sum(clicked) as int64) as clicked,
        cast(sum(machine_opened) as int64) as machine_opened,
        cast(sum(sent - confirmable) as int64) as delivery_unknown
    from outcomes
    group by accepted_date, channel

)

select * from final
