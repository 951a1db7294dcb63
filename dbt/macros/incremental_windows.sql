{#
    The two windows of an incremental run (see README.md, "Incremental models").
#}

{% macro late_callback_window_start() -%}
    {#- The oldest accepted_date an incremental run updates: late_callback_days before today.
        A constant expression, so BigQuery prunes the partitions before it (in MERGE too). -#}
    date_sub(current_date(), interval {{ var('late_callback_days') }} day)
{%- endmacro %}


{% macro event_date_watermark(last_event_column='last_event_at') -%}
    {#- The first event_date an incremental run of a model re-reads: the date of the newest event
        the model already holds, minus event_lookback_days (all of it when the model is empty).

        BigQuery prunes partitions on constant filters only, so on a real run the date is looked
        up first and written into the SQL as a literal. A dbt unit test has no table to look it
        up in (`this` is its fixture), so there it stays a subquery: same value, no pruning. -#}
    {%- set watermark_sql -%}
        select coalesce(
            date_sub(date(max({{ last_event_column }})),
                     interval {{ var('event_lookback_days') }} day),
            date '1970-01-01')
        from {{ this }}
    {%- endset -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        ({{ watermark_sql }})
    {%- else -%}
        date '{{ run_query(watermark_sql).columns[0].values()[0] }}'
    {%- endif -%}
{%- endmacro %}
