"""FCM's BigQuery export of message delivery data: its documented table, as Herald reads it.

Source: https://firebase.google.com/docs/cloud-messaging/understand-delivery, "BigQuery data
export" and "What data is exported to BigQuery?" (the schema table and the example queries).

With the export on (Firebase console, Project settings > Integrations > BigQuery), FCM writes one
row per message event to `<project>.firebase_messaging.data` in the Firebase project: the only
per-message record of what happened to a push after Herald handed it over. What it holds:
- MESSAGE_ACCEPTED for every message FCM's backend took, and a rejection event (`REJECTIONS`)
  for a request it refused.
- MESSAGE_DELIVERED, when the message reached the app's FCM SDK on the device, only from apps
  that enabled delivery data export: Android SDK 20.1.0+ (`setDeliveryMetricsExportToBigQuery`),
  iOS SDK 8.6.0+ (`Messaging.extensionHelper().exportDeliveryMetricsToBigQuery`, called for every
  notification in a notification service extension, or in the app delegate for background ones),
  Firebase Web SDK 9.0.0+. The dbt var `fcm_export_platforms` names the platforms whose apps
  enabled it (default android); a push to any other platform is confirmed only by its app's
  receipts (herald/receipts.py).

The table is partitioned by ingestion time, not by a column: its `_PARTITIONTIME` pseudo column
(`PARTITION_PSEUDO_COLUMN`) is the start of the UTC day the row was loaded, and the docs' queries
filter on it (`_PARTITIONTIME = TIMESTAMP('YYYY-MM-DD')`). Rows are loaded late: the daily export
begins at 4:00 AM Pacific and usually finishes within 24 hours, the first one may take up to 48
hours, and backfills can be scheduled for up to the past 30 days. So a row's load day can be days
after its event_timestamp, and whoever reads the export incrementally filters on
`_PARTITIONTIME` (what has been loaded since), never on event_timestamp (which would skip a row
loaded after the window passed its event): dbt's int_deliveries and herald.status.FcmExportSync
do.

`message_id` is the id part of the `name` FCM's send answers with
(`projects/<project>/messages/<message_id>`, https://firebase.google.com/docs/reference/fcm/rest/
v1/projects.messages), which Herald keeps on each push's `sent` event as provider_message_id. The
export's message_id is "generated from the App ID and timestamp" and "might, in some cases, not be
globally unique"; `instance_id` (an instance ID or Firebase installation ID) is the other half of
a message's identity, as the docs' delivery-rate query counts `CONCAT(message_id, instance_id)`.
Herald addresses devices by registration token and never learns their installation ID, so it
cannot join on instance_id; it joins on message_id and attributes the export's rows to a push only
when they name a single app instance (Herald sends each message to one token, i.e. one instance:
rows of a second instance mean the id was reused, and Herald cannot tell which rows are its own).
Repeated rows are harmless: every reader keeps the earliest time of each event.

This module is the export's one home in Herald: the dbt source YAML
(dbt/models/staging/__fcm_export_sources.yml) is generated from `EXPORT_FIELDS`, the local stack
creates the table from it (herald/local/provision.py), and the sandbox writes its rows with
`export_row`.

The local stack's BigQuery emulator (bqemulator) creates the table ingestion-time partitioned, as
FCM's is, but keeps no load time per row: it reads `_PARTITIONTIME` as the query's current
timestamp (every row "loaded now", not at the start of a UTC day). tests/fcm_export_test.py
documents that gap.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from herald.events import Field

SOURCE_URL = "https://firebase.google.com/docs/cloud-messaging/understand-delivery"

DEFAULT_DATASET = "firebase_messaging"
DEFAULT_TABLE = "data"
"""Where FCM writes the export: dataset `firebase_messaging`, table `data`, in the Firebase
project (configurable: HERALD_FCM_EXPORT_PROJECT, HERALD_FCM_EXPORT_DATASET,
HERALD_FCM_EXPORT_TABLE)."""

PARTITION_PSEUDO_COLUMN = "_PARTITIONTIME"
"""The table is partitioned by ingestion time, by day: this pseudo column (TIMESTAMP) is the start
of the UTC day the row was loaded. It is not a column of the schema (`select *` leaves it out)."""

MESSAGE_NAME_MARKER = "/messages/"


class ExportEvent(StrEnum):
    """The `event` column's documented values (paraphrased from the schema table, SOURCE_URL)."""

    MESSAGE_ACCEPTED = "MESSAGE_ACCEPTED"
    """FCM's server received the message and the request is valid."""
    MESSAGE_DELIVERED = "MESSAGE_DELIVERED"
    """The message reached the app's FCM SDK on the device. Exported only by apps that enabled
    delivery data export (Android SDK 20.1.0+, iOS SDK 8.6.0+, Web SDK 9.0.0+)."""
    MISSING_REGISTRATIONS = "MISSING_REGISTRATIONS"
    """Rejected: the request named no registration."""
    UNAUTHORIZED_REGISTRATION = "UNAUTHORIZED_REGISTRATION"
    """Rejected: the sender may not send to the registration."""
    MESSAGE_RECEIVED_INTERNAL_ERROR = "MESSAGE_RECEIVED_INTERNAL_ERROR"
    """Rejected: an unspecified error while processing the request."""
    MISMATCH_SENDER_ID = "MISMATCH_SENDER_ID"
    """Rejected: the sending sender id is not the one the endpoint declared."""
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    """Rejected: not enough quota."""
    INVALID_REGISTRATION = "INVALID_REGISTRATION"
    """Rejected: the registration is invalid."""
    INVALID_PACKAGE_NAME = "INVALID_PACKAGE_NAME"
    """Rejected: the package name is invalid."""
    INVALID_APNS_CREDENTIAL = "INVALID_APNS_CREDENTIAL"
    """Rejected: the APNs certificate is invalid."""
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    """Rejected: the request's parameters are invalid."""
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    """Rejected: the payload is over the limit."""
    AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
    """Rejected: authentication failed (the key the message was sent with)."""
    INVALID_TTL = "INVALID_TTL"
    """Rejected: the TTL is invalid."""


REJECTIONS: frozenset[ExportEvent] = frozenset(ExportEvent) - {
    ExportEvent.MESSAGE_ACCEPTED, ExportEvent.MESSAGE_DELIVERED}
"""The events by which FCM says it refused a message: never delivered. dbt's var
fcm_export_rejection_events lists the same (tests/dbt_models_test.py keeps them equal); a push
Herald recorded sent that the export reports rejected ends `undelivered`, the event as its
provider_code (int_deliveries)."""


class MessageType(StrEnum):
    """The `message_type` column: a notification or a data message; TOPIC marks the original
    message of a topic or campaign send, whose fan-out messages have one of the other two types
    (the values the docs' example queries filter on, SOURCE_URL)."""

    DISPLAY_NOTIFICATION = "DISPLAY_NOTIFICATION"
    DATA_MESSAGE = "DATA_MESSAGE"
    TOPIC = "TOPIC"


class SdkPlatform(StrEnum):
    """The `sdk_platform` column, "the platform of the recipient app". The docs list no values:
    these are the ones Herald's sandbox writes (upper-case Herald platforms, UNKNOWN when a message
    names none)."""

    ANDROID = "ANDROID"
    IOS = "IOS"
    WEB = "WEB"
    UNKNOWN = "UNKNOWN"


EXPORT_FIELDS: tuple[Field, ...] = (
    Field("event_timestamp", "TIMESTAMP", "NULLABLE", "Event timestamp as recorded by the server."),
    Field("project_number", "INTEGER", "NULLABLE",
          "The number of the project that sent the message."),
    Field("message_id", "STRING", "NULLABLE",
          "The message's id, generated from the App ID and timestamp: might, in some cases, not "
          "be globally unique. The part of the send answer's name after /messages/."),
    Field("instance_id", "STRING", "NULLABLE",
          "The unique id of the app the message was sent to, when available: an instance ID or a "
          "Firebase installation ID (not a registration token)."),
    Field("message_type", "STRING", "NULLABLE",
          "Notification or data message (" + ", ".join(MessageType) + "); TOPIC identifies the "
          "original message of a topic or campaign send."),
    Field("sdk_platform", "STRING", "NULLABLE", "The platform of the recipient app."),
    Field("app_name", "STRING", "NULLABLE",
          "The package name of an Android app or the bundle id of an iOS app."),
    Field("collapse_key", "STRING", "NULLABLE",
          "Identifies a group of messages that can be collapsed: while a device is not "
          "connected only the last message with a given collapse key is queued."),
    Field("priority", "INTEGER", "NULLABLE",
          "The message's priority, normal or high: on iOS, APNs priorities 5 and 10."),
    Field("ttl", "INTEGER", "NULLABLE",
          "How long (seconds) FCM keeps the message in storage while the device is offline."),
    Field("topic", "STRING", "NULLABLE", "The topic the message was sent to, when applicable."),
    Field("bulk_id", "INTEGER", "NULLABLE",
          "Identifies a group of related messages, such as one send to a topic."),
    Field("event", "STRING", "NULLABLE",
          "The type of the event: " + ", ".join(ExportEvent) + "."),
    Field("analytics_label", "STRING", "NULLABLE",
          "The message's fcm_options.analytics_label (herald/providers/fcm/labels.py)."),
)

LOAD_DELAY = timedelta(days=2)
"""How long after an event its row may be loaded (documented bound, SOURCE_URL): the daily export
begins at 4:00 AM Pacific and usually finishes within 24 hours; the first takes up to 48 hours.
(A backfill, scheduled by hand, reaches up to 30 days back: `dbt build --full-refresh` after
one.)"""

DEFAULT_TTL_S = 4 * 7 * 24 * 3600
"""FCM's default time to live, four weeks, when a message sets none."""


def message_id(name: str) -> str:
    """The export's message_id of a send answer's `name` (or of a name already reduced to it)."""
    return name.rpartition(MESSAGE_NAME_MARKER)[2]


def bigquery_schema() -> list[Any]:
    """The export table's schema as google-cloud-bigquery SchemaFields."""
    from google.cloud import bigquery

    return [bigquery.SchemaField(f.name, f.type, mode=f.mode, description=f.description)
            for f in EXPORT_FIELDS]


def export_row(*, event: ExportEvent, at: str, name: str, project_number: int, instance_id: str,
               platform: SdkPlatform, app_name: str, priority: int, display: bool,
               analytics_label: str | None, ttl_s: int = DEFAULT_TTL_S) -> dict[str, Any]:
    """One row of a message sent to one token, as FCM writes it (`at` ISO-8601 UTC; `name` the
    send answer's, or its message id), for the sandbox and for tests."""
    return {
        "event_timestamp": at,
        "project_number": project_number,
        "message_id": message_id(name),
        "instance_id": instance_id,
        "message_type": (MessageType.DISPLAY_NOTIFICATION if display
                         else MessageType.DATA_MESSAGE).value,
        "sdk_platform": platform.value,
        "app_name": app_name,
        "collapse_key": None,
        "priority": priority,
        "ttl": ttl_s,
        "topic": None,
        "bulk_id": None,
        "event": event.value,
        "analytics_label": analytics_label,
    }
