-- Every delivery in int_deliveries has exactly one terminal event (suppressed, duplicate, sent or
-- failed) in staging. Staging already counts a redelivered event once (same event_id), so a row
-- here is a real fault: a delivery that never finished, or one that finished twice (e.g. sent
-- and failed). Returns the offending spans with their terminal statuses.

with

deliveries as (

    select span_id from {{ ref('int_deliveries') }}

),

terminal_events as (

    select
        span_id,
        count(*) as terminal_events,
        string_agg(status, ',' order by status) as terminal_statuses
    from {{ ref('stg_herald__events') }}
    where parent_span_id is not null
        and status in ('suppressed', 'duplicate', 'sent', 'failed')
    group by span_id

),

final as (

    select
        deliveries.span_id,
        coalesce(terminal_events.terminal_events, 0) as terminal_events,
        terminal_events.terminal_statuses
    from deliveries
    left join terminal_events
        on deliveries.span_id = terminal_events.span_id
    where coalesce(terminal_events.terminal_events, 0) != 1

)

select * from final
