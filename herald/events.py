"""The event schema: one row per thing that happened to a request or a delivery.

This module is the single home of the analytics contract. The BigQuery table is created from
`EVENT_FIELDS`, the dbt source YAML is generated from it (`herald schema dbt-sources`), and the
pipeline builds rows only through `delivery_event` / `request_event`, so a column is added here once.

Vocabulary: a *request* is one accepted POST (one trace id); a *delivery* is one (channel, address)
that request fans out to (one span id whose parent is the request's span). Every delivery ends in
exactly one terminal status.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from herald.contracts import CHANNEL_BY_PROVIDER, Envelope, utc_now_iso


class Status(StrEnum):
    """Stages an event can record. `accepted`, `scheduled`, `canceled` and `resolved` (the
    request has been fanned out to `deliveries` deliveries) are about the request; `TERMINAL` ones
    close a delivery inside Herald; `CALLBACK` ones come later from the provider (for push, which
    FCM calls nobody back about: from the app's receipts, herald/receipts.py) and refine what
    happened after `sent`."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    """About the request: its `metadata.sendTime` (in `not_before`) is ahead, so it is held in
    the Firestore outbox and planned only then (no `resolved` event until it is due)."""
    CANCELED = "canceled"
    """About the request: its sender canceled it while it was scheduled; nothing is sent and it
    is finished (no `resolved` event)."""
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"
    DUPLICATE = "duplicate"
    SENT = "sent"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    PROVIDER_ACCEPTED = "provider_accepted"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    DEFERRED = "deferred"
    """SendGrid's callback: the receiving server asked it to try again later. Also Herald's own:
    the provider asked Herald to wait (a 429 or 503 with Retry-After / X-RateLimit-Reset, FCM
    QUOTA_EXCEEDED): `provider` and `provider_code` say who and why, `not_before` when the
    delivery will be sent again (from the Firestore outbox, so the wait survives a restart)."""
    OPENED = "opened"
    CLICKED = "clicked"
    OPTED_OUT = "opted_out"
    """A provider told Herald the recipient opted out (an SMS STOP, an email unsubscribe or spam
    report); recorded on the delivery it came from, with the provider's word in `reason`."""
    OPTED_IN = "opted_in"
    """A provider told Herald the recipient opted back in (an SMS START, YES or UNSTOP reply):
    the opt-out the same provider reported for the channel is lifted."""
    AUDIENCE = "audience"
    """About one page of an audience send (`audience: {topic | segment}`): the pipeline read it
    from Firestore: `page`, its users in `page_users` and the users of the pages so far, this one
    included, in `audience_size`. Its `resolved` event (same `page`) counts its deliveries."""
    AUDIENCE_COMPLETE = "audience_complete"
    """About an audience send: its last page was read; `page` is the number of pages and
    `audience_size` the users they held. The send is finished once every page 1..`page` has its
    `resolved` event and every delivery those count has ended."""
    PREFERENCE_CHANGED = "preference_changed"
    """The registry API set one of a user's switches (`setting`, new value in `value`): global,
    category, channel, device, quiet hours, topic subscription. Not about a delivery."""
    REGISTRY_CHANGED = "registry_changed"
    """The registry API changed a user's record otherwise (`setting`): contacts, a device
    registered or removed, the user erased. Not about a delivery."""


TERMINAL = frozenset({Status.SUPPRESSED, Status.DUPLICATE, Status.SENT, Status.FAILED,
                      Status.DEAD_LETTER})
REGISTRY = frozenset({Status.PREFERENCE_CHANGED, Status.REGISTRY_CHANGED})
CALLBACK = frozenset({Status.PROVIDER_ACCEPTED, Status.DELIVERED, Status.UNDELIVERED,
                      Status.BOUNCED, Status.DROPPED, Status.DEFERRED, Status.OPENED,
                      Status.CLICKED, Status.OPTED_OUT, Status.OPTED_IN})

FINAL_STATUS_PRECEDENCE: dict[str, tuple[int, str]] = {
    Status.SENT: (1, Status.SENT), Status.DELIVERED: (2, Status.DELIVERED),
    Status.UNDELIVERED: (3, Status.UNDELIVERED), Status.BOUNCED: (4, Status.BOUNCED),
    Status.DROPPED: (5, Status.DROPPED), Status.OPENED: (6, Status.DELIVERED),
    Status.CLICKED: (6, Status.DELIVERED), Status.FAILED: (7, Status.FAILED),
    Status.DUPLICATE: (8, Status.DUPLICATE), Status.SUPPRESSED: (9, Status.SUPPRESSED),
}
"""How a delivery's stages add up to its status: stage -> (rank, status); the highest rank wins,
whatever order the stages came in (an open proves delivery and outranks a later bounce). dbt's
var final_status_precedence (dbt/dbt_project.yml, which explains each rank) is the same table,
checked by tests/dbt_models_test.py; the status API (herald/status.py) uses this one."""


class Reason(StrEnum):
    """Why a delivery did not go out; provider-specific codes travel in `provider_code`. (A
    provider callback's `reason` is the provider's own word, see herald.callback_events.)"""

    USER_OPTED_OUT = "user_opted_out"
    CATEGORY_OPTED_OUT = "category_opted_out"
    CHANNEL_OPTED_OUT = "channel_opted_out"
    PROVIDER_OPTED_OUT = "provider_opted_out"
    """The recipient opted out of the channel through its provider (see Directory.record_opt_out)."""
    DEVICE_DISABLED = "device_disabled"
    UNKNOWN_USER = "unknown_user"
    NO_ADDRESS = "no_address"
    DUPLICATE_NOTIFICATION = "duplicate_notification"
    INVALID_MESSAGE = "invalid_message"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_CONFIGURATION = "provider_configuration"
    """The provider refused Herald's credentials, project or sender (FCM SENDER_ID_MISMATCH,
    Twilio 20003): nothing is disabled, the delivery is parked for replay once it is fixed."""
    PROVIDER_WAIT = "provider_wait"
    """The provider asked Herald to wait before sending (a `deferred` event's reason)."""
    QUIET_HOURS = "quiet_hours"
    """A normal or low priority delivery planned inside the user's quiet hours (a `deferred`
    event's reason; `not_before` is the window's end)."""
    FREQUENCY_CAPPED = "frequency_capped"
    """The user already had the category's cap of notifications today (HERALD_FREQUENCY_CAPS)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    OUTCOME_UNKNOWN = "outcome_unknown"
    UNRECONCILED = "unreconciled"
    ROW_REJECTED = "row_rejected"
    """BigQuery refused an event row (the dead letter holds the row and BigQuery's error); not
    replayable through Pub/Sub: fix the cause and insert the row from `dead_letters`."""
    TEMPLATE_ERROR = "template_error"
    """The request's template could not be rendered for the delivery (no such template or
    locale, a variable the request did not give): `detail` says which."""
    UNPROCESSABLE = "unprocessable"
    """A request the pipeline failed on after parsing it (a value its lookups refused, a bug):
    parked whole, with the error, so one request never stops the others."""


@dataclass(frozen=True)
class Field:
    """One column: its BigQuery type and mode, and the description analysts read in dbt docs."""

    name: str
    type: str
    mode: str
    description: str


EVENT_FIELDS: tuple[Field, ...] = (
    Field("event_id", "STRING", "REQUIRED",
          "Deterministic id (span and status): a redelivered message yields the same id, so "
          "analytics can drop repeats."),
    Field("event_ts", "TIMESTAMP", "REQUIRED", "When the stage happened (partitioning column)."),
    Field("status", "STRING", "REQUIRED", "Stage recorded: " + ", ".join(s.value for s in Status)),
    Field("trace_id", "STRING", "NULLABLE", "One per accepted HTTP request."),
    Field("span_id", "STRING", "NULLABLE", "One per delivery (or the request itself for accepted)."),
    Field("parent_span_id", "STRING", "NULLABLE", "The request's span for a delivery event."),
    Field("notification_id", "STRING", "NULLABLE", "The sender's notificationId."),
    Field("user_id", "STRING", "NULLABLE",
          "Recipient user id (an opaque id, not contact data); on a bulk request's accepted and "
          "resolved events NULL, its deliveries carry their own."),
    Field("sender_client", "STRING", "NULLABLE", "API client that sent the request."),
    Field("service_type", "STRING", "NULLABLE", "Sending service, from the request."),
    Field("category_type", "STRING", "NULLABLE", "Notification category, from the request."),
    Field("template_type", "STRING", "NULLABLE", "Template, from the request."),
    Field("channel", "STRING", "NULLABLE", "push, sms or email."),
    Field("priority", "STRING", "NULLABLE", "high, normal or low."),
    Field("platform", "STRING", "NULLABLE", "ios, android or web for push deliveries."),
    Field("device_id", "STRING", "NULLABLE", "Device document id for push deliveries."),
    Field("recipient_hash", "STRING", "NULLABLE",
          "Keyed hash (HMAC-SHA256) of the token, phone or email: joins without exposing it."),
    Field("provider", "STRING", "NULLABLE", "fcm, twilio or sendgrid."),
    Field("provider_message_id", "STRING", "NULLABLE", "Id the provider returned on send."),
    Field("reason", "STRING", "NULLABLE",
          "Why a delivery was suppressed, failed or dead-lettered (herald.events.Reason); on a "
          "provider callback, the provider's word: Twilio's error class, SendGrid's dropped "
          "reason or bounce_classification, the opt-out's keyword or event type."),
    Field("provider_code", "STRING", "NULLABLE", "The provider's own error code, if any."),
    Field("accepted_at", "TIMESTAMP", "NULLABLE", "When the ingest function accepted the request."),
    Field("attempts", "INTEGER", "NULLABLE", "Provider attempts a sent/failed/dead-lettered delivery took."),
    Field("deliveries", "INTEGER", "NULLABLE",
          "On a `resolved` event: how many deliveries the request fanned out to, so a request "
          "whose every delivery has a terminal event is known to be complete."),
    Field("detail", "STRING", "NULLABLE",
          "Free text: the provider's error message, or the raw message of a dead letter."),
    Field("bounce_type", "STRING", "NULLABLE",
          "On a bounced event: SendGrid's type, bounce (permanent, a hard bounce) or blocked "
          "(the receiving server refused it for now: a soft bounce)."),
    Field("machine_open", "BOOLEAN", "NULLABLE",
          "On an opened event: true when a privacy proxy (such as Apple Mail Privacy Protection) "
          "fetched the message, not a person (SendGrid's sg_machine_open)."),
    Field("not_before", "TIMESTAMP", "NULLABLE",
          "When Herald will send it, no earlier: on a `scheduled` event the request's sendTime; "
          "on Herald's own `deferred` event the end of the wait its provider asked for, or of the "
          "user's quiet hours."),
    Field("locale", "STRING", "NULLABLE",
          "On a templated delivery's events: the template locale it was rendered in (the "
          "recipient's locale, else its language, else the template's default)."),
    Field("page", "INTEGER", "NULLABLE",
          "On an audience send's events (all but its `accepted`): the page of its audience the "
          "event is about, from 1; on `audience_complete`, the number of pages."),
    Field("page_users", "INTEGER", "NULLABLE",
          "On an `audience` event: how many users the page held."),
    Field("audience_size", "INTEGER", "NULLABLE",
          "On an `audience` event: the users of the audience's pages so far, this one included; "
          "on `audience_complete`, the whole audience."),
    Field("setting", "STRING", "NULLABLE",
          "On preference_changed / registry_changed: what changed (notification_enabled, "
          "categories.<category>, channels.<channel>, devices.<deviceId>.notification_enabled, "
          "quiet_hours, topics.<topic>, contacts.<field>, devices.<deviceId>, user)."),
    Field("value", "STRING", "NULLABLE",
          "On preference_changed / registry_changed: the new value as JSON (true, false, "
          "quiet hours, a platform), null when removed; never a contact address or token."),
)

PARTITION_FIELD = "event_ts"
CLUSTER_FIELDS = ("channel", "status")
EVENTS_TABLE = "events"


def bigquery_schema() -> list[Any]:
    """The events table schema as google-cloud-bigquery SchemaFields."""
    from google.cloud import bigquery

    return [bigquery.SchemaField(f.name, f.type, mode=f.mode, description=f.description)
            for f in EVENT_FIELDS]


def recipient_hash(address: str, key: bytes) -> str:
    """Keyed hash of a contact address, so analytics never hold a raw phone, email or token."""
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


def _event_id(span_id: str, status: str) -> str:
    return hashlib.sha256(f"{span_id}/{status}".encode()).hexdigest()[:32]


def span_for(trace_id: str, *parts: str) -> str:
    """Deterministic span id of a delivery within a trace."""
    return hashlib.sha256("/".join((trace_id, *parts)).encode()).hexdigest()[:16]


def request_span(envelope: Envelope) -> str:
    """The span of a request's own events (and the parent of its deliveries'): the trace's root
    span, or on an audience send the span of the page the message is about (so each page has its
    own `resolved` event, and the reconciler settles each page's message on its own)."""
    page = envelope.audience_page
    return span_for(envelope.trace_id) if page is None else span_for(
        envelope.trace_id, "page", str(page.number))


def request_event(envelope: Envelope, status: Status, **extra: Any) -> dict[str, Any]:
    """An event about the request as a whole (accepted), or about one page of an audience send
    (see `request_span`), which carries its `page`."""
    request = envelope.request
    root = request_span(envelope)
    page = envelope.audience_page
    row = {
        "event_id": _event_id(root, status),
        "event_ts": utc_now_iso(),
        "status": status.value,
        "trace_id": envelope.trace_id,
        "span_id": root,
        "parent_span_id": None,
        "notification_id": request.notification_id,
        "user_id": request.user_id,
        "sender_client": envelope.sender_client,
        "service_type": request.service_type,
        "category_type": request.category_type,
        "template_type": request.template_type,
        "channel": request.channel.value,
        "priority": request.priority.value,
        "accepted_at": envelope.accepted_at,
        "page": page and page.number,
    }
    row.update(extra)
    return _complete(row)


def delivery_event(envelope: Envelope, span_id: str, status: Status, **extra: Any) -> dict[str, Any]:
    """An event about one delivery of a request, child of the request's span."""
    row = request_event(envelope, status)
    row.update(span_id=span_id, parent_span_id=row["span_id"], event_id=_event_id(span_id, status))
    row.update(extra)
    return _complete(row)


def dead_letter_event(raw: bytes, reason: str, detail: str) -> dict[str, Any]:
    """A message the pipeline could not parse: kept whole, with why, so it can be replayed."""
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return _complete({
        "event_id": _event_id(digest, Status.DEAD_LETTER),
        "event_ts": utc_now_iso(),
        "status": Status.DEAD_LETTER.value,
        "span_id": digest,
        "reason": reason,
        "detail": f"{detail} | raw={raw[:4096].decode('utf-8', 'replace')}",
    })


def callback_event(*, span_id: str | None, status: Status, occurred_at: str,
                   notification_id: str | None, provider: str, provider_message_id: str | None,
                   callback_id: str, provider_code: str | None = None, reason: str | None = None,
                   detail: str | None = None, bounce_type: str | None = None,
                   machine_open: bool | None = None, user_id: str | None = None,
                   recipient_hash: str | None = None) -> dict[str, Any]:
    """A provider's report about a delivery (see herald.callback_events), joined to it by span id.

    The event id is the delivery's span and the status, like every other event, so a callback
    the provider repeats is counted once; a machine open is a stage of its own, so a person's
    open after a privacy proxy's is not dropped as its repeat. A callback about no delivery (an
    opt-out the recipient texted on its own) is identified by the provider's event and its user.
    """
    if status not in CALLBACK:
        raise ValueError(f"{status} is not a callback status")
    stage = f"{status.value}/machine" if machine_open else status.value
    return _complete({
        "event_id": _event_id(span_id or f"{callback_id}/{user_id}", stage),
        "event_ts": occurred_at,
        "status": status.value,
        "span_id": span_id,
        "notification_id": notification_id,
        "user_id": user_id,
        "recipient_hash": recipient_hash,
        "channel": CHANNEL_BY_PROVIDER[provider].value,
        "provider": provider,
        "provider_message_id": provider_message_id,
        "provider_code": provider_code,
        "reason": reason,
        "detail": detail,
        "bounce_type": bounce_type,
        "machine_open": machine_open,
    })


def registry_event(*, status: Status, trace_id: str, user_id: str, sender_client: str,
                   setting: str, value: str | None, changed_at: str,
                   device_id: str | None = None) -> dict[str, Any]:
    """A change the registry API made to a user's record: who (`sender_client`), which user and
    `setting`, the new `value` (JSON text), when. One `trace_id` per API request, so the settings
    one PATCH changed share it; the event id is the trace, user and setting, so a redelivered
    message is counted once."""
    if status not in REGISTRY:
        raise ValueError(f"{status} is not a registry status")
    span = span_for(trace_id, user_id, setting)
    return _complete({
        "event_id": _event_id(span, status),
        "event_ts": changed_at,
        "status": status.value,
        "trace_id": trace_id,
        "span_id": span,
        "user_id": user_id,
        "sender_client": sender_client,
        "device_id": device_id,
        "setting": setting,
        "value": value,
    })


_NAMES = tuple(f.name for f in EVENT_FIELDS)


def utf8_text(value: Any) -> Any:
    """`value`, with any lone UTF-16 surrogate (which JSON can carry, from a sender or a provider)
    replaced, when it is a string: a row must encode as UTF-8, for Beam's coders and BigQuery."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _complete(row: dict[str, Any]) -> dict[str, Any]:
    unknown = set(row) - set(_NAMES)
    if unknown:
        raise KeyError(f"not in the event schema: {sorted(unknown)}")
    return {name: utf8_text(row.get(name)) for name in _NAMES}
