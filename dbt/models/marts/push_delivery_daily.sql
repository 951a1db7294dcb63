-- Push delivery per day (of acceptance, UTC) and platform, by the source that confirmed it:
-- FCM's BigQuery export (fcm_delivered_at, on the platforms whose apps enabled delivery data
-- export: var fcm_export_platforms) or the app's receipt (any platform: receipt_delivered_at).
-- FCM itself calls nobody back, so a push no source could have confirmed (another platform, a
-- device whose app sends no receipts) is unknown, not undelivered; one the export reports
-- rejected is undelivered (rejected_fcm_export).

with

pushes as (

    select * from {{ ref('int_deliveries') }}
    where channel = 'push' and sent_at is not null

),

daily as (

    select
        pushes.accepted_date,
        pushes.platform,
        cast(count(*) as int64) as sent,
        cast(countif({{ delivery_confirmable('pushes', 'receipt_devices') }}) as int64)
            as confirmable,
        cast(countif(pushes.final_status = 'delivered') as int64) as delivered,
        cast(countif(pushes.fcm_delivered_at is not null) as int64) as delivered_fcm_export,
        cast(countif(pushes.final_status = 'undelivered'
                     and pushes.provider_code in ({{ sql_strings(var('fcm_export_rejection_events')) }}))
             as int64) as rejected_fcm_export,
        cast(countif(pushes.receipt_delivered_at is not null) as int64) as delivered_app_receipt,
        cast(countif(pushes.final_status = 'delivered' and pushes.opened_at is not null) as int64)
            as opened
    from pushes
    left join {{ ref('int_receipt_devices') }} as receipt_devices
        on pushes.user_id = receipt_devices.user_id
        and pushes.device_id = receipt_devices.device_id
    group by pushes.accepted_date, pushes.platform

),

final as (

    select
        accepted_date,
        platform,
        sent,
        confirmable,
        sent - confirmable as delivery_unknown,
        delivered,
        delivered_fcm_export,
        rejected_fcm_export,
        delivered_app_receipt,
        opened,
        safe_divide(delivered, confirmable) as confirmed_delivery_rate,
        -- Only platforms FCM's export reports on have an FCM rate; NULL elsewhere.
        if(platform in ({{ sql_strings(var('fcm_export_platforms')) }}),
           safe_divide(delivered_fcm_export, sent), null) as fcm_export_delivered_rate,
        safe_divide(delivered_app_receipt, sent) as app_receipt_delivered_rate,
        safe_divide(opened, delivered) as opened_rate
    from daily

)

select * from final
