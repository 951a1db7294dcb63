"""Provider callbacks in one normalised, provider-agnostic shape: what the ingest function publishes
to the callbacks topic and the callbacks pipeline reads from it.

Each provider's package knows its own callbacks (herald/providers/twilio/status_callbacks.py,
herald/providers/sendgrid/event_webhook.py: fields, statuses, signatures) and turns them into
`DeliveryCallback`s; everything after the ingest function sees this shape only. FCM has no delivery
callbacks: a push's are its app's receipts (herald/receipts.py, provider "fcm").

Providers repeat callbacks (SendGrid retries a batch it got no 2xx for, for up to 24 h), so
`callback_id` is a hash of what identifies the provider's event, never of when Herald got it:
the same event posted twice has the same id, and the pipeline can drop the second.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Mapping

from herald.contracts import CHANNEL_BY_PROVIDER, ContractError
from herald.events import CALLBACK, Status, callback_event

_STRINGS = ("provider", "provider_message_id", "notification_id", "span_id", "provider_code",
            "reason", "detail", "bounce_type", "address", "occurred_at", "callback_id")
_REQUIRED = ("provider", "status", "occurred_at", "callback_id")


@dataclass(frozen=True)
class DeliveryCallback:
    """One provider event about one delivery (or, for an opt-out the recipient sent on its own,
    about one address)."""

    provider: str
    """"twilio" or "sendgrid"; "fcm" for a push app's receipt (ingest_function/receipts.py)."""
    provider_message_id: str | None
    """Twilio's MessageSid (of an incoming STOP: the incoming message's); SendGrid's X-Message-Id
    (sg_message_id before its first '.'), the id the sender got back when it sent."""
    notification_id: str | None
    """Herald's ids as the sender put them in the message; None if the message carried none."""
    span_id: str | None
    status: Status
    """One of herald.events.CALLBACK."""
    provider_code: str | None
    """Twilio's ErrorCode; SendGrid's SMTP status code (bounce, dropped, deferred), never a reason."""
    reason: str | None
    """The provider's word for why: SendGrid's dropped `reason` or bounce_classification, Twilio's
    error class (herald.providers.base.ErrorClass), the opt-out's keyword or event type."""
    detail: str | None
    """The provider's free text: Twilio's ErrorMessage, SendGrid's SMTP response or bounce reason."""
    bounce_type: str | None
    """On `bounced`: SendGrid's type, "bounce" (permanent) or "blocked" (temporary)."""
    machine_open: bool | None
    """On `opened`: True when a privacy proxy fetched the images (SendGrid's sg_machine_open)."""
    address: str | None
    """On `opted_out` and `opted_in`: the phone number or email address the provider opted out
    (or back in), so the callbacks pipeline can find the users who have it; None on every other status (events hold a keyed hash
    of it, never the address)."""
    occurred_at: str
    """ISO-8601 UTC: when the provider says it happened (SendGrid's timestamp, Twilio's carrier
    RawDlrDoneDate), else when Herald received it."""
    callback_id: str
    """Deterministic: the same provider event always has the same id."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, body: Any) -> DeliveryCallback:
        """Parse `to_json()` output; ContractError names the first bad field."""
        if not isinstance(body, Mapping):
            raise ContractError("callback", "must be a JSON object")
        for name in _STRINGS:
            value = body.get(name)
            if not (isinstance(value, str) and value) and not (
                    value is None and name not in _REQUIRED):
                raise ContractError(name, "must be a non-empty string")
        if body.get("status") not in CALLBACK:
            raise ContractError("status", f"must be one of {sorted(CALLBACK)}")
        if body.get("machine_open") not in (None, True, False):
            raise ContractError("machine_open", "must be a boolean")
        if body["provider"] not in CHANNEL_BY_PROVIDER:
            raise ContractError("provider", f"must be one of {sorted(CHANNEL_BY_PROVIDER)}")
        try:
            datetime.fromisoformat(body["occurred_at"])
        except ValueError as error:
            raise ContractError("occurred_at", "must be an ISO-8601 timestamp") from error
        return cls(**{name: body.get(name) for name in _STRINGS},
                   status=Status(body["status"]), machine_open=body.get("machine_open"))

    def to_event(self, *, user_id: str | None = None,
                 recipient_hash: str | None = None) -> dict[str, Any]:
        """The event row recording this callback on its delivery; an opt-out names its user and
        the keyed hash of its address (the callbacks pipeline finds them)."""
        return callback_event(
            span_id=self.span_id, status=self.status, occurred_at=self.occurred_at,
            notification_id=self.notification_id, provider=self.provider,
            provider_message_id=self.provider_message_id, callback_id=self.callback_id,
            provider_code=self.provider_code, reason=self.reason, detail=self.detail,
            bounce_type=self.bounce_type, machine_open=self.machine_open, user_id=user_id,
            recipient_hash=recipient_hash)

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


def callback(provider: str, status: Status, occurred_at: str, identity: tuple[Any, ...], *,
             provider_message_id: str | None = None, notification_id: str | None = None,
             span_id: str | None = None, provider_code: str | None = None,
             reason: str | None = None, detail: str | None = None,
             bounce_type: str | None = None, machine_open: bool | None = None,
             address: str | None = None) -> DeliveryCallback:
    """A DeliveryCallback whose callback_id is 128 bits of SHA-256 over the provider, the status
    and `identity` (what names the provider's event: its ids and codes, never its arrival time),
    as a JSON array so no two identities collide."""
    callback_id = hashlib.sha256(json.dumps([provider, status.value, *identity]).encode()
                                 ).hexdigest()[:32]
    return DeliveryCallback(
        provider=provider, provider_message_id=provider_message_id,
        notification_id=notification_id, span_id=span_id, status=status,
        provider_code=provider_code, reason=reason, detail=detail, bounce_type=bounce_type,
        machine_open=machine_open, address=address, occurred_at=occurred_at,
        callback_id=callback_id)


def text(source: Mapping[str, Any], key: str) -> str | None:
    """An optional field: ids, codes and words arrive as strings (a form field, a custom arg);
    anything else, or "", is treated as absent rather than guessed at."""
    value = source.get(key)
    return value if isinstance(value, str) and value else None


def required_text(source: Mapping[str, Any], key: str) -> str:
    """A field the provider documents on every callback of the kind; ContractError without it."""
    value = text(source, key)
    if value is None:
        raise ContractError(key, "is required")
    return value
