-- Opt-outs the providers reported, per day (of the report, UTC), channel, provider (the source)
-- and reason (the provider's word: SendGrid unsubscribe, group_unsubscribe, spamreport or a
-- dropped reason naming its suppression list; Twilio's STOP keyword or error 21610). Each became
-- the user's provider opt-out in Firestore; later deliveries to them show in
-- opt_out_suppressions_daily as provider_opted_out.

with

events as (

    select * from {{ ref('stg_herald__events') }}

),

opt_outs as (

    select * from events
    where status = 'opted_out'

),

final as (

    -- An opt-out of an address no user has still counts in opt_outs, with no user.
    select
        event_date,
        channel,
        provider,
        reason,
        cast(count(*) as int64) as opt_outs,
        cast(count(distinct user_id) as int64) as users
    from opt_outs
    group by event_date, channel, provider, reason

)

select * from final
