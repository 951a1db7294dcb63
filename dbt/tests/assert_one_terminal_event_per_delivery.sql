-- Every delivery in int_deliveries has exactly one terminal status (suppressed, duplicate, sent or
-- failed) in staging. A repeat of the same event has the same status (event_id is span and
-- status), so distinct statuses are counted: a row here is a real fault, a delivery that finished
-- twice (e.g. sent and failed). (int_deliveries keeps only spans with a terminal event, so one
-- that never finished is not a delivery there.) Provider callbacks are not terminal events.
-- Returns the offending spans with their terminal statuses.

with

deliveries as (

    select span_id from {{ ref('int_deliveries') }}

),

terminal_events as (

    select
        span_id,
        count(distinct status) as terminal_events,
        string_agg(distinct status, ',' order by status) as terminal_statuses
    from {{ ref('stg_herald__events') }}
    where parent_span_id is not null
        and status in ({{ sql_strings(var('delivery_terminal_statuses')) }})
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
