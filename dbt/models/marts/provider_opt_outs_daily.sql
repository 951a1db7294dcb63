-- Opt-outs (and opt-ins) the providers reported, per day (of the report, UTC), channel, provider
-- (the source) and reason (the provider's word: SendGrid unsubscribe, group_unsubscribe,
-- spamreport or a dropped reason naming its suppression list; Twilio's STOP or START keyword or
-- error 21610). Each opt-out became the user's provider opt-out in Firestore, lifted by a later
-- opt-in from the same provider; deliveries in between show in opt_out_suppressions_daily as
-- provider_opted_out.

with

events as (

    select * from {{ ref('stg_herald__events') }}

),

opt_outs as (

    select * from events
    where status in ('opted_out', 'opted_in')

),

final as (

    -- An opt-out of an address no user has still counts in opt_outs, with no user.
    select
        event_date,
        channel,
        provider,
        reason,
        cast(countif(status = 'opted_out') as int64) as opt_outs,
        cast(countif(status = 'opted_in') as int64) as opt_ins,
        cast(count(distinct user_id) as int64) as users
    from opt_outs
    group by event_date, channel, provider, reason

)

select * from final
