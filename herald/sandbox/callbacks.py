"""Delivery callbacks as Twilio and SendGrid send them: planned when a request is accepted, then
signed and POSTed by background workers once due.

- Twilio: for each accepted SMS that named a StatusCallback URL, one form POST per status change
  to that URL (sent then delivered or undelivered; failed alone), signed with X-Twilio-Signature.
- SendGrid: for each accepted mail/send request, JSON arrays of events (processed; delivered,
  bounce, dropped, or deferred then delivered; then, for mail with an HTML part only, open and
  click: SendGrid tracks opens with an image and clicks by rewriting HTML links, so plain-text
  mail, which is what Herald sends, has neither) to the one configured Event Webhook URL, signed
  with ECDSA P-256 as SendGrid's Signed Event Webhook is.

Every payload has the shape and the fields the providers document (the contract fixtures in
tests/fixtures/providers are the reference the tests hold the sandbox to), not only the ones
Herald reads.
- FCM has no delivery callbacks: its answer only says Google accepted the message and any device
  receipt goes to the app, not the sender, so the product records push as "sent" only and the
  sandbox calls nothing back for it.

The signatures are computed here from the providers' published schemes, not with the SDKs'
helpers, so a test that checks them with the SDKs' validators compares two implementations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import heapq
import itertools
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlencode

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.contracts import PROVIDER_BY_CHANNEL, Channel, utc_now_iso
from herald.sandbox.faults import (CallbackFaults, Dice, SandboxSettings, SendGridFaults,
                                   TwilioFaults)
from herald.sandbox.ledger import Ledger, SentCallback
from herald.settings import Settings

logger = logging.getLogger(__name__)

TWILIO = PROVIDER_BY_CHANNEL[Channel.SMS]
SENDGRID = PROVIDER_BY_CHANNEL[Channel.EMAIL]

DEFAULT_TWILIO_AUTH_TOKEN: str = next(
    knob.default for knob in fields(Settings) if knob.name == "twilio_auth_token")
"""Herald's own default, so the local stack's signatures verify with no configuration."""

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

TWILIO_ERROR_CODES = {"undelivered": "30003", "failed": "30008"}
"""Twilio's "Unreachable destination handset" and "Unknown error"."""

SENDGRID_EVENT_DETAILS: Mapping[str, Mapping[str, Any]] = {
    "delivered": {"response": "250 2.0.0 OK", "ip": "192.0.2.10", "tls": 1},
    "bounce": {"type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
               "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
               "ip": "192.0.2.10", "tls": 1},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "deferred": {"response": "451 4.7.1 Try again later", "attempt": "1", "ip": "192.0.2.10",
                 "tls": 1},
    "open": {"useragent": "Mozilla/5.0", "ip": "192.0.2.1", "sg_machine_open": False},
    "click": {"url": "https://herald.local/", "url_offset": {"index": 0, "type": "html"},
              "useragent": "Mozilla/5.0", "ip": "192.0.2.1"},
}
"""The fields SendGrid documents for each kind of event, beyond the ones every event has
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event)."""

CALLBACK_TIMEOUT_S = 5.0
WORKERS = 8
"""POSTing threads: enough that a slow receiver does not hold every later callback back."""


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's scheme: HMAC-SHA1 with the auth token over the full URL (query string included)
    followed by each POST parameter's name and value in name order, base64-encoded."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class SendGridSigner:
    """The Signed Event Webhook key: ECDSA P-256 with SHA-256 over timestamp + raw body."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
                private_key.curve, ec.SECP256R1):
            raise ValueError("the SendGrid webhook key must be an ECDSA P-256 private key")
        self._key = private_key

    @classmethod
    def generate(cls) -> SendGridSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> SendGridSigner:
        """An unencrypted PEM private key, so a restarted sandbox keeps its public key."""
        key = serialization.load_pem_private_key(pem, password=None)
        return cls(key)  # type: ignore[arg-type]

    @property
    def public_key(self) -> str:
        """Base64 of the DER SubjectPublicKeyInfo: what SendGrid's dashboard shows and what
        `sendgrid.helpers.eventwebhook.EventWebhook` takes."""
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        """The X-Twilio-Email-Event-Webhook-Signature value: base64 of the DER ECDSA signature."""
        return base64.b64encode(
            self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@dataclass(frozen=True)
class TwilioMessage:
    """An accepted SMS, with what its status callbacks carry."""

    sid: str
    account_sid: str
    to: str
    sender: str
    status_callback: str | None

    def payloads(self, faults: TwilioFaults, dice: Dice) -> list[dict[str, str]]:
        """The form of each status change, in Twilio's order; the outcome is drawn here."""
        outcome = dice.pick([("undelivered", faults.undelivered), ("failed", faults.failed)])
        statuses = ["failed"] if outcome == "failed" else ["sent", outcome or "delivered"]
        return [self._form(status) for status in statuses]

    def _form(self, status: str) -> dict[str, str]:
        """The properties Twilio documents for a status callback (SmsSid and SmsStatus repeat
        MessageSid and MessageStatus), with ErrorCode on a failure and the carrier's receipt time
        (RawDlrDoneDate, YYMMDDhhmm) on delivered and undelivered."""
        form = {"MessageSid": self.sid, "SmsSid": self.sid, "MessageStatus": status,
                "SmsStatus": status, "AccountSid": self.account_sid, "To": self.to,
                "From": self.sender, "ApiVersion": "2010-04-01"}
        if status in TWILIO_ERROR_CODES:
            form["ErrorCode"] = TWILIO_ERROR_CODES[status]
        if status in ("delivered", "undelivered"):
            form["RawDlrDoneDate"] = datetime.now(timezone.utc).strftime("%y%m%d%H%M")
        return form


@dataclass(frozen=True)
class SendGridRecipient:
    email: str
    custom_args: Mapping[str, str]
    """The personalization's custom_args merged over the mail's, as SendGrid echoes them."""


@dataclass(frozen=True)
class SendGridMail:
    """An accepted mail/send request: one X-Message-Id shared by all its recipients."""

    message_id: str
    recipients: tuple[SendGridRecipient, ...]
    html: bool = False
    """The mail has a text/html part, so SendGrid can track its opens and clicks."""

    def payloads(self, faults: SendGridFaults, dice: Dice, accepted_at: float,
                 step_s: float) -> list[list[dict[str, Any]]]:
        """One event array per step, each recipient's n-th event in the n-th array; outcomes
        are drawn here and the timestamps are when each step is due, so they keep the true order
        even when the arrays are sent reordered."""
        chains = [self._events(index, recipient, faults, dice, accepted_at, step_s)
                  for index, recipient in enumerate(self.recipients)]
        return [[chain[step] for chain in chains if step < len(chain)]
                for step in range(max(map(len, chains), default=0))]

    def _events(self, index: int, recipient: SendGridRecipient, faults: SendGridFaults,
                dice: Dice, accepted_at: float, step_s: float) -> list[dict[str, Any]]:
        outcome = dice.pick([("bounce", faults.bounce), ("dropped", faults.dropped),
                             ("deferred", faults.deferred)])
        if outcome in ("bounce", "dropped"):
            chain = ["processed", outcome]
        else:
            chain = ["processed", *(["deferred"] if outcome else []), "delivered"]
            if self.html and dice.chance(faults.open):
                chain.append("open")
                if dice.chance(faults.click):
                    chain.append("click")
        # SendGrid's sg_message_id is the X-Message-Id plus a per-recipient filter suffix.
        message_id = f"{self.message_id}.filterdrecv-sandbox-{index}.0"
        return [{**recipient.custom_args, **SENDGRID_EVENT_DETAILS.get(event, {}),
                 "email": recipient.email, "timestamp": int(accepted_at + step * step_s),
                 "smtp-id": f"<{self.message_id}@sandbox.herald.local>",
                 "event": event, "sg_event_id": secrets.token_urlsafe(16),
                 "sg_message_id": message_id}
                for step, event in enumerate(chain, 1)]


@dataclass(frozen=True)
class _Due:
    """A callback waiting in the queue."""

    provider: str
    url: str
    payload: Any
    duplicate: bool
    reordered: bool


class CallbackDispatcher:
    """Plans callbacks on acceptance and POSTs them from worker threads when due.

    The receiver's answer is recorded but never acted on: Twilio does not retry status callbacks,
    and SendGrid's retries are what the duplicate_callbacks fault stands for.
    """

    def __init__(self, ledger: Ledger, dice: Dice, *, twilio_auth_token: str,
                 sendgrid_webhook_url: str | None, sendgrid_signer: SendGridSigner) -> None:
        self._ledger = ledger
        self._dice = dice
        self._twilio_auth_token = twilio_auth_token
        self._sendgrid_url = sendgrid_webhook_url
        self._signer = sendgrid_signer
        self._queue: list[tuple[float, int, _Due]] = []
        self._order = itertools.count()  # ties in due time leave in scheduling order
        self._ready = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"herald-sandbox-callbacks-{i}",
                                          daemon=True) for i in range(WORKERS)]
        for worker in self._workers:
            worker.start()

    def schedule(self, source: TwilioMessage | SendGridMail, settings: SandboxSettings) -> None:
        """Draw `source`'s outcome and faults now and queue its callbacks; nothing is sent for a
        message with nowhere to send to (no StatusCallback, no webhook URL)."""
        started = time.monotonic()
        faults: CallbackFaults
        if isinstance(source, TwilioMessage):
            provider, url, faults = TWILIO, source.status_callback, settings.twilio
        else:
            provider, url, faults = SENDGRID, self._sendgrid_url, settings.sendgrid
        if not url:
            return
        step_s = faults.callback_delay_ms / 1000
        payloads: list[Any] = (
            source.payloads(settings.twilio, self._dice) if isinstance(source, TwilioMessage)
            else source.payloads(settings.sendgrid, self._dice, time.time(), step_s))
        reordered = self._dice.chance(faults.reordered_callbacks)
        if reordered:
            payloads.reverse()
        due: list[tuple[float, _Due]] = []
        for step, payload in enumerate(payloads, 1):
            at = started + step * step_s
            copies = 2 if self._dice.chance(faults.duplicate_callbacks) else 1
            due.extend((at, _Due(provider, url, payload, copy > 0, reordered))
                       for copy in range(copies))
        with self._ready:
            for at, item in due:
                heapq.heappush(self._queue, (at, next(self._order), item))
            self._ready.notify(len(due))

    def close(self) -> None:
        """Stop the workers; callbacks not yet due are dropped."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join(CALLBACK_TIMEOUT_S)

    def _next(self) -> _Due | None:
        """The next due callback, waiting for it; None once closed."""
        with self._ready:
            while not self._closed:
                if not self._queue:
                    self._ready.wait()
                    continue
                wait = self._queue[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._queue)[2]
                self._ready.wait(wait)
            return None

    def _work(self) -> None:
        with requests.Session() as session:
            while (item := self._next()) is not None:
                body, headers = self._sign(item)
                try:
                    status: int | None = session.post(item.url, data=body, headers=headers,
                                                      timeout=CALLBACK_TIMEOUT_S).status_code
                except requests.RequestException as error:
                    logger.debug("%s callback to %s failed: %s", item.provider, item.url, error)
                    status = None
                self._ledger.record_callback(SentCallback(
                    item.provider, item.url, item.payload, status, item.duplicate, item.reordered,
                    utc_now_iso()))

    def _sign(self, item: _Due) -> tuple[bytes, dict[str, str]]:
        """The body and headers the provider would send; SendGrid signs at send time, so a
        re-sent batch carries a fresh timestamp, as SendGrid's retries do."""
        if item.provider == TWILIO:
            return urlencode(item.payload).encode(), {
                "Content-Type": "application/x-www-form-urlencoded",
                TWILIO_SIGNATURE_HEADER: twilio_signature(self._twilio_auth_token, item.url,
                                                          item.payload)}
        body = json.dumps(item.payload).encode()
        timestamp = str(int(time.time()))
        return body, {"Content-Type": "application/json",
                      SENDGRID_SIGNATURE_HEADER: self._signer.sign(timestamp, body),
                      SENDGRID_TIMESTAMP_HEADER: timestamp}
