"""FCM's BigQuery export of message delivery data: its documented table, as Herald reads it.

With the export on (Firebase console, Project settings > Integrations > BigQuery > Cloud
Messaging), FCM writes one row per message event to `firebase_messaging.data` in the Firebase
project, Android delivery included: the only per-message record of what happened to a push after
FCM accepted it (https://firebase.google.com/docs/cloud-messaging/understand-delivery, "BigQuery
data export", and its schema table). Rows arrive with a delay (FCM batches analytics data for up
to 24 hours), and only Android's SDK reports delivery; iOS and web pushes have no such row, which
is what app receipts (herald/receipts.py) are for.

`message_id` is the id part of the `name` FCM's send answers with
(`projects/<project>/messages/<message_id>`, https://firebase.google.com/docs/reference/fcm/rest/
v1/projects.messages), which Herald keeps on each push's `sent` event as provider_message_id; dbt
joins the two on it (dbt/models/intermediate/int_deliveries.sql).

This module is the export's one home in Herald: the dbt source YAML
(dbt/models/staging/__fcm_export_sources.yml) is generated from `EXPORT_FIELDS`, the local stack
creates the table from it, and the sandbox writes its rows with `export_row`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from herald.events import Field

DEFAULT_DATASET = "firebase_messaging"
DEFAULT_TABLE = "data"
"""Where FCM writes the export: dataset `firebase_messaging`, table `data`, in the Firebase
project (configurable: HERALD_FCM_EXPORT_PROJECT, HERALD_FCM_EXPORT_DATASET,
HERALD_FCM_EXPORT_TABLE)."""

MESSAGE_NAME_MARKER = "/messages/"


class ExportEvent(StrEnum):
    """The `event` column's values Herald reads."""

    MESSAGE_ACCEPTED = "MESSAGE_ACCEPTED"
    """FCM received the message and it is available for delivery."""
    MESSAGE_DELIVERED = "MESSAGE_DELIVERED"
    """The message reached the app's FCM SDK on the device (Android only)."""
    MISSED_TTL = "MISSED_TTL"
    """The message expired before it could be delivered (device offline past its TTL)."""
    DROPPED_TOO_MANY_PENDING_MESSAGES = "DROPPED_TOO_MANY_PENDING_MESSAGES"
    """The device had too many pending messages: this one was dropped."""
    DROPPED_APP_FORCE_STOPPED = "DROPPED_APP_FORCE_STOPPED"
    """The user force-stopped the app: the message was not delivered."""
    DROPPED_DEVICE_INACTIVE = "DROPPED_DEVICE_INACTIVE"
    """The device has been inactive too long: the message was not delivered."""


class SdkPlatform(StrEnum):
    """The `sdk_platform` column: the receiving device's platform."""

    ANDROID = "ANDROID"
    IOS = "IOS"
    WEB = "WEB"
    UNKNOWN = "UNKNOWN"


EXPORT_FIELDS: tuple[Field, ...] = (
    Field("event_timestamp", "TIMESTAMP", "NULLABLE", "When FCM recorded the event."),
    Field("project_number", "INTEGER", "NULLABLE", "The Firebase project's number."),
    Field("message_id", "STRING", "NULLABLE",
          "The message's id: the part of the send answer's name after /messages/."),
    Field("instance_id", "STRING", "NULLABLE",
          "The app instance the message was sent to (a Firebase installation id, not a token)."),
    Field("message_type", "STRING", "NULLABLE", "DISPLAY_NOTIFICATION or DATA_MESSAGE."),
    Field("sdk_platform", "STRING", "NULLABLE", "ANDROID, IOS, WEB or UNKNOWN."),
    Field("app_name", "STRING", "NULLABLE", "The receiving app's package name or bundle id."),
    Field("collapse_key", "STRING", "NULLABLE", "The message's collapse key, if any."),
    Field("priority", "INTEGER", "NULLABLE", "Delivery priority: 5 normal, 10 high."),
    Field("ttl", "INTEGER", "NULLABLE", "Time to live, in seconds."),
    Field("topic", "STRING", "NULLABLE", "The topic the message was sent to, if any."),
    Field("bulk_id", "INTEGER", "NULLABLE", "An id shared by related sends, such as a campaign."),
    Field("event", "STRING", "NULLABLE",
          "What happened: " + ", ".join(event.value for event in ExportEvent) + " and others."),
    Field("analytics_label", "STRING", "NULLABLE",
          "The message's fcm_options.analytics_label (herald/providers/fcm/labels.py)."),
)

PARTITION_FIELD = "event_timestamp"
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
    """One row as FCM writes it (`at` ISO-8601 UTC), for the sandbox and for tests."""
    return {
        "event_timestamp": at,
        "project_number": project_number,
        "message_id": message_id(name),
        "instance_id": instance_id,
        "message_type": "DISPLAY_NOTIFICATION" if display else "DATA_MESSAGE",
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
