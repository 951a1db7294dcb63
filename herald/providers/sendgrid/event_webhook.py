"""SendGrid's Event Webhook: its signature, its event types and what each means for a delivery.

SendGrid POSTs JSON arrays of events (a batch when it reaches 768 KB or every 30 s, retried for up
to 24 h until it gets a 2xx). Every event type SendGrid documents is in `EVENT_TYPES`, each row
citing its documentation; an event type not in the table (SendGrid adds some) is counted and
logged, never a failure of the batch, because a 4xx would make SendGrid resend the whole batch
for a day.

Security (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):
- Signed Event Webhook: ECDSA P-256 with SHA-256 over the X-Twilio-Email-Event-Webhook-Timestamp
  header followed by the raw body, base64 in X-Twilio-Email-Event-Webhook-Signature, checked with
  the SDK's `sendgrid.helpers.eventwebhook.EventWebhook` against the public key SendGrid shows.
  Herald requires it.
- OAuth 2.0: SendGrid fetches a bearer token from a token URL you give it (client credentials)
  and sends it in Authorization. That authenticates SendGrid to an authorization server Herald
  does not run; it signs nothing, so Herald does not use it (the signature already proves the
  batch is SendGrid's and unaltered).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Mapping

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from herald.callback_events import DeliveryCallback, callback, required_text, text
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, ContractError
from herald.events import Status

SENDGRID = PROVIDER_BY_CHANNEL[Channel.EMAIL]
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
REFERENCE = "https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventType:
    """What one SendGrid event type means for its delivery."""

    status: Status | None
    """The Herald status it records; None for events about no delivery of Herald's (the account)
    or that Herald does not act on."""
    source: str
    """The documentation section it comes from."""


EVENT_TYPES: Mapping[str, EventType] = {
    # Delivery events
    "processed": EventType(Status.PROVIDER_ACCEPTED, f"{REFERENCE}#processed-events"),
    "dropped": EventType(Status.DROPPED, f"{REFERENCE}#dropped-events"),
    "deferred": EventType(Status.DEFERRED, f"{REFERENCE}#deferred-events"),
    "delivered": EventType(Status.DELIVERED, f"{REFERENCE}#delivered-events"),
    "bounce": EventType(Status.BOUNCED, f"{REFERENCE}#bounce-and-blocked-events"),
    # Engagement events
    "open": EventType(Status.OPENED, f"{REFERENCE}#open-events"),
    "click": EventType(Status.CLICKED, f"{REFERENCE}#click-events"),
    "spamreport": EventType(Status.OPTED_OUT, f"{REFERENCE}#spam-report-events"),
    "unsubscribe": EventType(Status.OPTED_OUT, f"{REFERENCE}#unsubscribe-events"),
    "group_unsubscribe": EventType(Status.OPTED_OUT, f"{REFERENCE}#group-unsubscribe-events"),
    # A resubscription to an unsubscribe group: Herald sends with no unsubscribe groups, and a
    # group resubscribe does not lift a global unsubscribe or a spam report, so it lifts nothing.
    "group_resubscribe": EventType(None, f"{REFERENCE}#group-resubscribe-events"),
    # Account events: about the SendGrid account (compliance suspension, deactivation, ban,
    # reactivation), not a message; logged as errors for the operator.
    "account_status_change": EventType(None, f"{REFERENCE}#account-status-change-events"),
}
"""Every event type the Event Webhook reference documents."""

BOUNCE_TYPES = frozenset({"bounce", "blocked"})
"""A bounce event's `type`: "bounce" is a permanent rejection (a hard bounce: the address joins
SendGrid's bounce list), "blocked" a temporary one (a soft bounce) (#bounce-and-blocked-events)."""

OPT_OUT_DROP_REASONS = frozenset({"Unsubscribed Address", "Spam Reporting Address"})
"""Dropped reasons that say the address is on SendGrid's unsubscribe or spam report list: the
recipient opted out before (possibly before Herald saw it), so the drop is also an opt-out."""


@dataclass
class Batch:
    """One webhook POST, read: the callbacks to publish and what was not turned into one."""

    callbacks: list[DeliveryCallback] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    """By event type: types Herald records nothing for (group_resubscribe, account events), and
    types SendGrid added after this table ("unknown:<type>")."""
    invalid: int = 0
    """Events without what every event of their type has (logged)."""


_FILTER_SUFFIX = re.compile(r"\.(?:filter|recvd)")


def x_message_id(sg_message_id: str) -> str:
    """The X-Message-Id the send was answered with: sg_message_id is it followed by a suffix of
    SendGrid's mail filter (".filterdrecv-...", ".recvd-..."); the X-Message-Id itself may hold
    dots (the reference's own example: "14c5d75ce93.dfd.64b469.filter0001...")."""
    match = _FILTER_SUFFIX.search(sg_message_id)
    return sg_message_id[:match.start()] if match else sg_message_id.split(".", 1)[0]


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


def _callbacks(event: Mapping[str, Any], kind: str, status: Status) -> list[DeliveryCallback]:
    """One event of a type with a delivery status. Herald's ids come back as the custom args the
    sender set on the recipient's personalization (herald.providers.sendgrid.sender)."""
    sg_message_id = text(event, "sg_message_id")
    if sg_message_id is None and status is not Status.OPTED_OUT:  # an opt-out is of an address
        raise ContractError("sg_message_id", "is required")
    occurred_at = _unix_time_iso(event.get("timestamp"))
    common: dict[str, Any] = dict(
        provider_message_id=x_message_id(sg_message_id) if sg_message_id else None,
        notification_id=text(event, "notification_id"), span_id=text(event, "span_id"))
    identity = (sg_message_id, event.get("timestamp"), text(event, "sg_event_id"))
    if status is Status.BOUNCED:
        bounce_type = text(event, "type")
        if bounce_type not in BOUNCE_TYPES:
            raise ContractError("type", f"must be one of {sorted(BOUNCE_TYPES)}")
        # `status` is the SMTP status code, `reason` the receiving server's full answer.
        common.update(bounce_type=bounce_type, provider_code=text(event, "status"),
                      reason=text(event, "bounce_classification"), detail=text(event, "reason"))
    elif status is Status.DROPPED:
        # `reason` is why SendGrid dropped it; `status` ("5.0.0") is an SMTP code, not a reason.
        common.update(reason=text(event, "reason"), provider_code=text(event, "status"))
    elif status is Status.DEFERRED:
        common.update(detail=text(event, "response"))
    elif status is Status.OPENED:
        common.update(machine_open=event.get("sg_machine_open") is True)
    elif status is Status.OPTED_OUT:
        common.update(reason=kind, address=required_text(event, "email"))
    found = [callback(SENDGRID, status, occurred_at, identity, **common)]
    if status is Status.DROPPED and common["reason"] in OPT_OUT_DROP_REASONS:
        found.append(callback(
            SENDGRID, Status.OPTED_OUT, occurred_at, identity,
            **{**common, "provider_code": None, "address": required_text(event, "email")}))
    return found


def read_events(events: list[Any]) -> Batch:
    """A verified batch's events in Herald's shape. Never raises for one event: a malformed
    one is counted invalid, an unknown type counted ignored, and the rest are read."""
    batch = Batch()
    for index, event in enumerate(events):
        kind = event.get("event") if isinstance(event, Mapping) else None
        known = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
        if known is None:
            batch.ignored[f"unknown:{kind}" if isinstance(kind, str) else "unknown"] += 1
            log.warning("SendGrid event %d of %d has an event type Herald does not know: %r",
                        index, len(events), kind)
            continue
        if known.status is None:
            batch.ignored[kind] += 1
            if kind == "account_status_change":
                log.error("SendGrid reports an account status change: %r (%s)",
                          event.get("type"), known.source)
            continue
        try:
            batch.callbacks.extend(_callbacks(event, kind, known.status))
        except ContractError as error:
            batch.invalid += 1
            log.warning("SendGrid %s event %d of %d ignored: %s", kind, index, len(events), error)
    return batch


def parse_body(body: bytes) -> list[Any]:
    """The webhook's body, a JSON array of events; ContractError (the caller answers 400) if it
    is not one."""
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ContractError("body", f"is not valid JSON: {error}") from error
    if not isinstance(events, list):
        raise ContractError("body", "must be a JSON array of events")
    return events


@lru_cache(maxsize=4)
def verifier(public_key: str | None) -> EventWebhook:
    """Parsed once per key; ValueError when no key is configured or it is not a public key."""
    if not public_key:
        raise ValueError("not set")
    return EventWebhook(public_key)


def signed(public_key: str | None, body: bytes, header: Callable[[str], str | None]) -> bool:
    """Whether `body` carries a valid Signed Event Webhook signature (`header(name)` reads the
    request's headers). ValueError when the public key is missing or invalid: that is the
    operator's mistake, not SendGrid's, and deserves a 5xx so SendGrid retries."""
    check = verifier(public_key)
    signature, timestamp = header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        return False
    try:
        return check.verify_signature(body.decode("utf-8"), signature, timestamp)
    except ValueError:  # a signature that is not base64, a body that is not UTF-8
        return False
