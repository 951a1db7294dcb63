-- Deliveries Herald did not attempt because the recipient opted out (of everything, a category
-- or a channel) or disabled the device (not a frequency cap: delivery_outcomes_daily counts
-- those), per day (of acceptance, UTC), channel, category and
-- reason.

with

deliveries as (

    select * from {{ ref('int_deliveries') }}

),

suppressed as (

    select * from deliveries
    where final_status = 'suppressed'
        and reason != 'frequency_capped'  -- Herald's cap, not the recipient's choice

),

final as (

    select
        accepted_date,
        channel,
        category_type,
        reason,
        count(*) as suppressed
    from suppressed
    group by accepted_date, channel, category_type, reason

)

select * from final
