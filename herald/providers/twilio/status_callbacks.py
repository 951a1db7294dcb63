"""Twilio's webhooks to Herald: message status callbacks, incoming messages (STOP and START), and
the request signatures that prove both came from Twilio.

Status callbacks (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status):
a form POST to the StatusCallback URL the sender gave (Herald's ids ride in its query string) on
each status change of an outbound message, with MessageSid, MessageStatus, AccountSid, From, To,
ApiVersion and, as the channel and status make them apply, ErrorCode, ErrorMessage (failed,
undelivered), RawDlrDoneDate (delivered, undelivered: the carrier's receipt time), MessagingServiceSid
and others. Twilio adds properties without notice, so unknown ones are ignored (and still signed).

Incoming messages (https://www.twilio.com/docs/messaging/guides/webhook-request): a form POST to
the number's or Messaging Service's incoming URL. A reply that is exactly one of Twilio's opt-out
keywords blocks further messages from that sender to the number (Twilio then refuses sends with
error 21610); with Advanced Opt-Out the POST says so in OptOutType (STOP, START, HELP) and the
keywords are the service's own. Either way the reply is the recipient's SMS opt-out.

Signatures (https://www.twilio.com/docs/usage/webhooks/webhooks-security,
https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys): X-Twilio-Signature is base64
HMAC over the full URL Twilio requested followed by each POST parameter's name and value in
name order; the key is the account's Auth Token (HMAC-SHA1), or a SharedKey secret when a Webhook
Rule names one, in which case X-Twilio-Webhooks-Signature-Settings says `key=...,algorithm=...`.
A JSON body is not in the signed string: the URL carries `bodySHA256`, the hex SHA-256 of the
body, and the URL is signed. `twilio.request_validator.RequestValidator` checks all of these.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping

from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)

from herald.callback_events import DeliveryCallback, callback, required_text, text
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, ContractError
from herald.events import Status
from herald.providers.base import ErrorClass
from herald.providers.twilio.errors import classify

TWILIO = PROVIDER_BY_CHANNEL[Channel.SMS]
MESSAGE_RESOURCE = "https://www.twilio.com/docs/messaging/api/message-resource#message-status-values"
OPT_OUT_KEYWORDS_PAGE = ("https://help.twilio.com/articles/223134027-Twilio-support-for-opt-out-"
                         "keywords-SMS-STOP-filtering")
ADVANCED_OPT_OUT_PAGE = "https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out"

MESSAGE_STATUSES: Mapping[str, Status | None] = {
    # Outbound, before Twilio hands the message on: the send's answer already covers these.
    "accepted": None,     # a Messaging Service took the request and will pick a sender
    "scheduled": None,    # to be sent at SendAt
    "queued": None,       # waiting to be sent
    "sending": None,      # being handed to the carrier
    "canceled": Status.UNDELIVERED,  # a scheduled message canceled before it went out
    "sent": Status.PROVIDER_ACCEPTED,  # the carrier accepted it
    "failed": Status.UNDELIVERED,    # Twilio could not send it (ErrorCode says why)
    "delivered": Status.DELIVERED,   # the carrier confirmed delivery
    "undelivered": Status.UNDELIVERED,  # the carrier says it was not delivered (ErrorCode)
    "partially_delivered": Status.DELIVERED,  # some of a multi-part message arrived
    "read": Status.OPENED,           # a read receipt (WhatsApp, RCS)
    # Inbound messages: Herald's status callbacks never report these.
    "receiving": None,
    "received": None,
}
"""Every MessageStatus value of the Message resource (MESSAGE_RESOURCE), in Herald's statuses.
Twilio's "failed" after Herald's "sent" is `undelivered` with Twilio's ErrorCode, because
`failed` is Herald's own terminal status and a delivery has one."""

MERGED_STATUSES = frozenset({"canceled", "partially_delivered"})
"""MessageStatus values that share a Herald status with another: kept as the callback's reason."""

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
"""Twilio's default opt-out keywords (OPT_OUT_KEYWORDS_PAGE): a reply that is exactly one of them,
in any case, blocks the number. With Advanced Opt-Out, OptOutType says it instead."""

OPT_OUT_TYPE_STOP = "STOP"
"""OptOutType's value for an opt-out (ADVANCED_OPT_OUT_PAGE); START and HELP are the others."""


def raw_dlr_done_date(value: str | None, received_at: str) -> str:
    """When the carrier reported the delivery: RawDlrDoneDate is YYMMDDhhmm, to the minute, with
    no time zone (taken as UTC, as Twilio gives none); absent, malformed or later than the
    callback's arrival (a carrier's local clock ahead of UTC), the arrival time."""
    if value is None or len(value) != 10 or not value.isdigit():
        return received_at
    try:
        moment = datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return received_at
    at = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return min(at, received_at)


def status_callback(form: Mapping[str, str], query: Mapping[str, str],
                    received_at: str) -> list[DeliveryCallback]:
    """A verified status callback: `form` is its POST body, `query` its URL's query string (where
    Herald put the ids), `received_at` when it arrived (ISO UTC). Empty for a status Herald does
    not track; an `undelivered` whose ErrorCode says the recipient opted out is an `opted_out`
    too. ContractError (the caller answers 400) without MessageSid or a known MessageStatus."""
    sid, raw_status = required_text(form, "MessageSid"), required_text(form, "MessageStatus")
    if raw_status not in MESSAGE_STATUSES:
        raise ContractError("MessageStatus", f"must be one of {sorted(MESSAGE_STATUSES)}")
    status = MESSAGE_STATUSES[raw_status]
    if status is None:
        return []
    code = text(form, "ErrorCode")
    error_class = classify(code) if code else None
    common = dict(provider_message_id=sid, notification_id=text(query, "notification_id"),
                  span_id=text(query, "span_id"), provider_code=code,
                  detail=text(form, "ErrorMessage"))
    occurred_at = (raw_dlr_done_date(text(form, "RawDlrDoneDate"), received_at)
                   if status in (Status.DELIVERED, Status.UNDELIVERED) else received_at)
    reason = error_class.value if error_class else (
        raw_status if raw_status in MERGED_STATUSES else None)
    found = [callback(TWILIO, status, occurred_at, (sid, raw_status, code), reason=reason,
                      **common)]
    if error_class is ErrorClass.OPTED_OUT:
        found.append(callback(TWILIO, Status.OPTED_OUT, occurred_at, (sid, code),
                              reason=code, address=required_text(form, "To"), **common))
    return found


def incoming_message(form: Mapping[str, str], received_at: str) -> list[DeliveryCallback]:
    """A verified incoming message: an `opted_out` for the number it came from when it is an
    opt-out (OptOutType STOP, or without Advanced Opt-Out a body that is one of Twilio's
    keywords); empty for any other message (START, HELP and conversation are not Herald's)."""
    sid = required_text(form, "MessageSid")
    opt_out_type = text(form, "OptOutType")
    keyword = (text(form, "Body") or "").strip().upper()
    if opt_out_type is not None:
        opted_out = opt_out_type.upper() == OPT_OUT_TYPE_STOP
    else:
        opted_out = keyword in OPT_OUT_KEYWORDS
    if not opted_out:
        return []
    return [callback(TWILIO, Status.OPTED_OUT, received_at, (sid,), provider_message_id=sid,
                     reason=keyword or OPT_OUT_TYPE_STOP, address=required_text(form, "From"))]


def signed(url: str, params: Mapping[str, str] | str, headers: Mapping[str, str], *,
           auth_token: str, shared_key: str | None) -> bool:
    """Whether a request to `url` (the full URL Twilio was given, query string as received) with
    form `params` (or, for a JSON body, the body text: its `bodySHA256` is checked) carries a
    valid signature in `headers`. A request that names a SharedKey is checked with `shared_key`
    and the algorithm it names, and fails when Herald has no shared key."""
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    settings = headers.get(SIGNATURE_SETTINGS_HEADER)
    if settings and not shared_key:
        return False
    secret = shared_key if settings else auth_token
    return RequestValidator(secret).validate(url, params, signature,
                                             get_signature_algorithm(settings))
