-- Deliveries per day (UTC date of acceptance), template, the locale it was rendered in, channel
-- and terminal status. Inline requests (no rendering) have a NULL locale.

with

terminal_events as (

    select * from {{ ref('stg_herald__events') }}
    where parent_span_id is not null
        and status in ({{ sql_strings(var('delivery_terminal_statuses')) }})

),

final as (

    select
        date(accepted_at) as accepted_date,
        template_type,
        locale,
        channel,
        status,
        count(distinct span_id) as deliveries
    from terminal_events
    group by accepted_date, template_type, locale, channel, status

)

select * from final
