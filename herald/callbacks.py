"""Provider delivery callbacks in one normalised shape: what the ingest function publishes to the
callbacks topic and the pipeline reads from it.

Twilio and SendGrid report delivery differently (a form POST per status change with Herald's ids
in the callback URL's query string; JSON event batches with the ids as custom args); everything
after the ingest function sees `DeliveryCallback` only. FCM has no delivery callbacks, so push
ends at "sent".

Providers repeat callbacks (SendGrid retries a batch it got no 2xx for, for up to 24 h), so
`callback_id` is a hash of what identifies the provider's event, never of when Herald got it:
the same event posted twice has the same id, and the pipeline can drop the second.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from herald.contracts import PROVIDER_BY_CHANNEL, Channel, ContractError
from herald.events import CALLBACK, Status, callback_event

TWILIO = PROVIDER_BY_CHANNEL[Channel.SMS]
SENDGRID = PROVIDER_BY_CHANNEL[Channel.EMAIL]


TWILIO_STATUSES: Mapping[str, Status] = {
    "sent": Status.PROVIDER_ACCEPTED,
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.UNDELIVERED,
    "read": Status.OPENED,
}
"""Twilio MessageStatus values Herald tracks, in Herald's statuses (herald.events.Status, the one
list): Twilio's "failed" after Herald's "sent" is `undelivered` with Twilio's ErrorCode, because
`failed` is Herald's own terminal status and a delivery has one. The others (queued, accepted, scheduled, sending,
canceled, and the inbound ones) are states before "sent" that the send answer already covers,
or that Herald's sends never reach."""

SENDGRID_EVENTS: Mapping[str, Status] = {
    "processed": Status.PROVIDER_ACCEPTED,
    "delivered": Status.DELIVERED,
    "bounce": Status.BOUNCED,
    "dropped": Status.DROPPED,
    "deferred": Status.DEFERRED,
    "open": Status.OPENED,
    "click": Status.CLICKED,
}
"""SendGrid event types Herald tracks. Engagement events outside the delivery funnel
(spamreport, unsubscribe, group_unsubscribe, group_resubscribe) are not."""

_REQUIRED = ("provider", "provider_message_id", "status", "occurred_at", "callback_id")
_OPTIONAL = ("notification_id", "span_id", "provider_code")


@dataclass(frozen=True)
class DeliveryCallback:
    """One provider event about one delivery."""

    provider: str
    """"twilio" or "sendgrid"."""
    provider_message_id: str
    """Twilio's MessageSid; SendGrid's X-Message-Id (sg_message_id before its first '.'), the id
    the sender got back when it sent."""
    notification_id: str | None
    """Herald's ids as the sender put them in the message; None if the message carried none."""
    span_id: str | None
    status: Status
    """One of herald.events.CALLBACK."""
    provider_code: str | None
    """Twilio's ErrorCode; SendGrid's SMTP status (bounce), else its reason (dropped)."""
    occurred_at: str
    """ISO-8601 UTC. SendGrid's event time; for Twilio, whose callbacks carry no time, when
    Herald received it."""
    callback_id: str
    """Deterministic: the same provider event always has the same id."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, body: Any) -> DeliveryCallback:
        """Parse `to_json()` output; ContractError names the first bad field."""
        if not isinstance(body, Mapping):
            raise ContractError("callback", "must be a JSON object")
        for name in (*_REQUIRED, *_OPTIONAL):
            value = body.get(name)
            if not (isinstance(value, str) and value) and not (value is None and name in _OPTIONAL):
                raise ContractError(name, "must be a non-empty string")
        if body["status"] not in CALLBACK:
            raise ContractError("status", f"must be one of {sorted(CALLBACK)}")
        status = Status(body["status"])
        try:
            datetime.fromisoformat(body["occurred_at"])
        except ValueError as error:
            raise ContractError("occurred_at", "must be an ISO-8601 timestamp") from error
        return cls(**{**{name: body.get(name) for name in (*_REQUIRED, *_OPTIONAL)},
                      "status": status})

    def to_event(self) -> dict[str, Any]:
        """The event row recording this callback on its delivery."""
        return callback_event(
            span_id=self.span_id, status=self.status, occurred_at=self.occurred_at,
            notification_id=self.notification_id, provider=self.provider,
            provider_message_id=self.provider_message_id, provider_code=self.provider_code)

    def to_pubsub(self) -> tuple[bytes, dict[str, str]]:
        """Message data and attributes; provider, status and callback_id are attributes so a
        subscriber can filter or dedupe without decoding."""
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        return data, {"provider": self.provider, "status": self.status.value,
                      "callback_id": self.callback_id}

    @classmethod
    def from_pubsub(cls, data: bytes) -> DeliveryCallback:
        try:
            decoded = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ContractError("message", f"is not JSON: {error}") from error
        return cls.from_json(decoded)


def _callback_id(*parts: str | float | None) -> str:
    """128 bits of SHA-256 over the parts as a JSON array, so no two part lists collide."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _unix_time_iso(timestamp: Any) -> str:
    """SendGrid's event time (Unix seconds) in the microsecond UTC format of the rest of Herald."""
    moment = None
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        try:
            moment = datetime.fromtimestamp(timestamp, timezone.utc)
        except (ValueError, OverflowError, OSError):  # out of datetime's range
            pass
    if moment is None:
        raise ContractError("timestamp", "must be a Unix time in seconds")
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _required(source: Mapping[str, Any], key: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise ContractError(key, "is required")
    return value


def _optional(source: Mapping[str, Any], key: str) -> str | None:
    """Ids and codes arrive as strings (a form field, a custom arg); anything else, or "", is
    treated as absent rather than guessed at."""
    value = source.get(key)
    return value if isinstance(value, str) and value else None


def from_twilio(form: Mapping[str, str], query: Mapping[str, str],
                received_at: str) -> DeliveryCallback | None:
    """A verified Twilio status callback: `form` is its POST body, `query` its URL's query string
    (where Herald put the ids). None for a status Herald does not track."""
    sid, raw_status = _required(form, "MessageSid"), _required(form, "MessageStatus")
    status = TWILIO_STATUSES.get(raw_status)
    if status is None:
        return None
    code = _optional(form, "ErrorCode")
    return DeliveryCallback(
        provider=TWILIO, provider_message_id=sid,
        notification_id=_optional(query, "notification_id"), span_id=_optional(query, "span_id"),
        status=status, provider_code=code,
        occurred_at=received_at, callback_id=_callback_id(TWILIO, sid, raw_status, code))


def from_sendgrid(event: Mapping[str, Any]) -> DeliveryCallback | None:
    """One event of a verified SendGrid webhook batch. None for an event type Herald does not
    track; ContractError for an event without what every SendGrid event has."""
    if not isinstance(event, Mapping):
        raise ContractError("event", "must be a JSON object")
    raw_status = _required(event, "event")
    status = SENDGRID_EVENTS.get(raw_status)
    if status is None:
        return None
    sg_message_id = _required(event, "sg_message_id")
    timestamp = event.get("timestamp")
    return DeliveryCallback(
        provider=SENDGRID, provider_message_id=sg_message_id.split(".", 1)[0],
        notification_id=_optional(event, "notification_id"), span_id=_optional(event, "span_id"),
        status=status, provider_code=_optional(event, "status") or _optional(event, "reason"),
        occurred_at=_unix_time_iso(timestamp),
        callback_id=_callback_id(SENDGRID, sg_message_id, raw_status, timestamp,
                                 _optional(event, "sg_event_id")))
