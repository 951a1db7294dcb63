"""App receipts: how a push Herald sent tells Herald it was received or opened.

FCM confirms delivery only for Android, and only in its BigQuery export
(herald/providers/fcm/export.py); iOS and web pushes are silent after FCM accepted them
(https://firebase.google.com/docs/cloud-messaging/understand-delivery). The common answer is a
receipt from the app itself: every push Herald sends carries, in its data payload under
`RECEIPT_DATA_KEY`, a token naming its delivery, and the app posts it back to
`POST /v1/receipts` (ingest_function/receipts.py) as `{"token", "event": "received"|"opened",
"at"}`; the callbacks pipeline records it as a `delivered` or `opened` event of that delivery.

The endpoint takes no sender API key (an app holds none), so the token is the credential:
`<span id>.<expiry, epoch seconds>.<HMAC-SHA256 over both with the server's receipt key,
base64url>`. It cannot be forged without the key, cannot be moved to another delivery (the span
id is inside the MAC) and stops working at its expiry. Posting the same receipt again is
harmless: a delivery's event ids are its span and status, so a repeat is the same event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from enum import StrEnum

from herald.events import Status
from herald.providers.fcm.limits import RECEIPT_DATA_KEY, RECEIPT_TOKEN_CHARS, SPAN_ID_CHARS

__all__ = ["RECEIPT_DATA_KEY", "RECEIPT_TOKEN_CHARS", "ReceiptError", "ReceiptEvent",
           "ReceiptKey"]

_EXPIRY_DIGITS = 10


class ReceiptEvent(StrEnum):
    """What an app reports, and the delivery status it records."""

    RECEIVED = "received"
    OPENED = "opened"

    @property
    def status(self) -> Status:
        return Status.DELIVERED if self is ReceiptEvent.RECEIVED else Status.OPENED


class ReceiptError(ValueError):
    """A token that does not prove a delivery: `reason` is "forged" (malformed, or a MAC the key
    did not make) or "expired"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"receipt token is {reason}")
        self.reason = reason


@dataclass(frozen=True)
class ReceiptKey:
    """The server key receipts are signed with (HERALD_RECEIPT_KEY) and how long they last."""

    key: bytes
    ttl_s: int

    def token(self, span_id: str, now: float | None = None) -> str:
        """The token a delivery's push carries: RECEIPT_TOKEN_CHARS characters."""
        if len(span_id) != SPAN_ID_CHARS or "." in span_id:
            raise ValueError(f"not a delivery's span id: {span_id!r}")
        expires = int(time.time() if now is None else now) + self.ttl_s
        signed = f"{span_id}.{expires:0{_EXPIRY_DIGITS}d}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, token: str, now: float | None = None) -> str:
        """The span id the token was made for; ReceiptError when forged or expired."""
        span_id, expires, mac = (token.split(".") + ["", ""])[:3]
        signed = f"{span_id}.{expires}"
        if (len(token) != RECEIPT_TOKEN_CHARS or not expires.isdigit()
                or not hmac.compare_digest(mac, self._mac(signed))):
            raise ReceiptError("forged")
        if int(expires) < (time.time() if now is None else now):
            raise ReceiptError("expired")
        return span_id

    def _mac(self, signed: str) -> str:
        digest = hmac.new(self.key, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")  # 43 characters

