{% macro exact_percentiles(column, partition_by, stage) -%}
    {#- p50/p95/p99 of `column` per `partition_by`, exact (nearest rank, NULLs ignored), named
        p<N>_<stage>_ms. Exact rather than APPROX_QUANTILES: an approximate rank lands on a
        neighbouring batch's latency, seconds away, and analysts compare these to the 10 s SLO. -#}
    {%- for percent in [50, 95, 99] %}
    percentile_disc({{ column }}, {{ percent / 100 }})
        over (partition by {{ partition_by | join(', ') }}) as p{{ percent }}_{{ stage }}_ms
        {{- "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
