{#
    The request attributes and terminal outcome of a delivery, all NULL: the columns a partial
    delivery row built from a callback or from FCM's export does not know (the terminal event
    brings them; int_deliveries folds the partial rows of a span into one). In the order of
    int_deliveries' terminal_parts, whose union these rows join.
#}
{% macro unknown_request_attributes() -%}
    {%- set columns = [
        ('trace_id', 'string'), ('notification_id', 'string'), ('user_id', 'string'),
        ('sender_client', 'string'), ('service_type', 'string'), ('category_type', 'string'),
        ('template_type', 'string'), ('channel', 'string'), ('priority', 'string'),
        ('platform', 'string'), ('device_id', 'string'), ('provider', 'string'),
        ('accepted_at', 'timestamp'), ('terminal_status', 'string'), ('terminal_at', 'timestamp'),
    ] -%}
    {%- for name, type in columns -%}
        cast(null as {{ type }}) as {{ name }}{{ ",\n        " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
