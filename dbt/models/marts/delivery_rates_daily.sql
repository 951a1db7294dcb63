-- Delivery outcomes per day (of acceptance, UTC) and channel, and the share of eligible
-- deliveries that went out.

with

deliveries as (

    select * from {{ ref('int_deliveries') }}

),

daily as (

    select
        date(accepted_at) as accepted_date,
        channel,
        count(*) as deliveries,
        -- The casts are no-ops on BigQuery (COUNTIF is INT64); the local emulator types COUNTIF
        -- as NUMERIC, which notebooks would read as Decimal.
        cast(countif(final_status = 'sent') as int64) as sent,
        cast(countif(final_status = 'failed') as int64) as failed,
        cast(countif(final_status = 'suppressed') as int64) as suppressed,
        cast(countif(final_status = 'duplicate') as int64) as duplicate
    from deliveries
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
        safe_divide(sent, deliveries - suppressed - duplicate) as delivery_rate
    from daily

)

select * from final
