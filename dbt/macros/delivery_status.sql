{#
    The status vocabulary the models share, from the vars in dbt_project.yml (kept equal to
    herald/events.py by tests/dbt_models_test.py), so no model spells a status list by hand.
#}

{% macro sql_strings(values) -%}
    {#- ['a', 'b'] -> 'a', 'b' (for an IN list) -#}
    {%- for value in values -%}'{{ value }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}


{% macro status_rank(status) -%}
    {#- The precedence rank of an event status (NULL: the status does not decide final_status). -#}
    case {{ status }}
        {%- for name, spec in var('final_status_precedence').items() %}
        when '{{ name }}' then {{ spec[0] }}
        {%- endfor %}
    end
{%- endmacro %}


{% macro status_outcome(status) -%}
    {#- The final_status an event status stands for (opened and clicked stand for delivered). -#}
    case {{ status }}
        {%- for name, spec in var('final_status_precedence').items() %}
        when '{{ name }}' then '{{ spec[1] }}'
        {%- endfor %}
    end
{%- endmacro %}


{% macro final_statuses() -%}
    {#- Every value final_status can take, in precedence order. -#}
    {%- set seen = [] -%}
    {%- for name, spec in var('final_status_precedence').items() -%}
        {%- if spec[1] not in seen %}{% do seen.append(spec[1]) %}{% endif -%}
    {%- endfor -%}
    {{ return(seen) }}
{%- endmacro %}


{% macro delivery_confirmable(deliveries, receipt_devices) -%}
    {#- Whether a source could have confirmed a delivery (`deliveries` left-joined to
        int_receipt_devices as `receipt_devices` on user_id and device_id): every SMS and email
        (Twilio and SendGrid report delivery); a push to a var('fcm_export_platforms') platform
        (FCM's BigQuery export) or to a device whose app sends receipts. -#}
    ({{ deliveries }}.channel != 'push'
     or {{ deliveries }}.platform in ({{ sql_strings(var('fcm_export_platforms')) }})
     or {{ receipt_devices }}.device_id is not null)
{%- endmacro %}
