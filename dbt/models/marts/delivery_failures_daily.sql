-- Why deliveries failed, per day (of acceptance, UTC), channel and provider: Herald's own
-- failures (failed: unknown_user, no_address, provider_error) and the provider's later reports
-- (undelivered, bounced, dropped), by reason and the provider's own code; a bounce is hard
-- (bounce_type bounce) or soft (blocked).

with

deliveries as (

    select * from {{ ref('int_deliveries') }}

),

failures as (

    -- int_deliveries is clustered by final_status: this reads the failed blocks only.
    select * from deliveries
    where final_status in ('failed', 'undelivered', 'bounced', 'dropped')

),

final as (

    select
        accepted_date,
        channel,
        provider,
        final_status as failure,
        bounce_type,
        reason,
        provider_code,
        count(*) as deliveries
    from failures
    group by accepted_date, channel, provider, final_status, bounce_type, reason, provider_code

)

select * from final
