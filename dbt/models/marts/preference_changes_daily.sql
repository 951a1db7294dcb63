-- The registry API's switch changes per day (UTC), sender, setting and new value: opt-outs (and
-- opt-ins) over time, by global switch, category, channel, device and topic.

with

changes as (

    select * from {{ ref('stg_herald__events') }}
    where status = 'preference_changed'

),

final as (

    select
        event_date as changed_date,
        sender_client,
        setting,
        value,
        count(*) as changes,
        count(distinct user_id) as users
    from changes
    group by changed_date, sender_client, setting, value

)

select * from final
