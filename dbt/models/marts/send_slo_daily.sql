-- The soft real-time target per day (of acceptance, UTC) and channel: the share of deliveries
-- handed to the provider within var('send_slo_ms') of being due (int_deliveries.due_at: accepted,
-- or later the sendTime or deferral it was held for).

with

outcomes as (

    select * from {{ ref('delivery_outcomes_daily') }}

),

daily as (

    select
        accepted_date,
        channel,
        cast(sum(sent) as int64) as sent,
        cast(sum(sent_within_slo) as int64) as sent_within_slo
    from outcomes
    group by accepted_date, channel

),

final as (

    select
        accepted_date,
        channel,
        {{ var('send_slo_ms') }} as slo_ms,
        sent,
        sent_within_slo,
        -- NULL, not 0, on a day nothing was sent.
        safe_divide(sent_within_slo, sent) as slo_share
    from daily

)

select * from final
