"""The sandbox's record of what it accepted and what it called back, so a test can check delivery
and callbacks without a real provider.

Handler threads write concurrently, so every access goes through one lock; readers get a copy.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from herald.contracts import Channel, utc_now_iso


@dataclass(frozen=True)
class Delivery:
    """One recipient a provider endpoint accepted, before the ledger stamps it.

    The ids are None when the caller did not send them, so a test sees the omission.
    """

    channel: Channel
    recipient: str
    notification_id: str | None
    span_id: str | None
    provider_message_id: str
    text: str | None = None
    """What the recipient reads first: the push's title, the SMS body, the email's subject."""
    analytics_label: str | None = None
    """A push's `fcm_options.analytics_label`, as FCM's BigQuery export would carry it."""


@dataclass(frozen=True)
class LedgerEntry:
    """A delivery plus when it was accepted and by which provider request."""

    delivery: Delivery
    time: str
    request_index: int

    def to_json(self) -> dict[str, Any]:
        """The flat shape `GET /_ledger` serves."""
        return {**asdict(self.delivery), "time": self.time, "request_index": self.request_index}


@dataclass(frozen=True)
class SentCallback:
    """One delivery callback POST the sandbox made, as sent, with the receiver's answer."""

    provider: str
    url: str
    payload: Any
    """Twilio: the form fields; SendGrid: the event array."""
    status: int | None
    """The receiver's HTTP status; None when it could not be reached (the sandbox does not
    retry)."""
    duplicate: bool
    """This POST repeats the one before it (the duplicate_callbacks fault)."""
    reordered: bool
    """This message's callbacks were sent in reverse order (the reordered_callbacks fault)."""
    time: str

    def to_json(self) -> dict[str, Any]:
        """One item of `GET /_callbacks`."""
        return asdict(self)


class Ledger:
    """Thread-safe, append-only lists of accepted deliveries and sent callbacks, plus a provider
    request counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._callbacks: list[SentCallback] = []
        self._requests = 0

    def next_request_index(self) -> int:
        """Number a provider HTTP request, so entries that share a request share its index."""
        with self._lock:
            index = self._requests
            self._requests += 1
            return index

    def record(self, request_index: int, deliveries: Iterable[Delivery]) -> None:
        """Stamp and append what one request was accepted for."""
        time = utc_now_iso()
        stamped = [LedgerEntry(delivery, time, request_index) for delivery in deliveries]
        with self._lock:
            self._entries.extend(stamped)

    def entries(self) -> list[LedgerEntry]:
        """A snapshot; later records do not change it."""
        with self._lock:
            return list(self._entries)

    def record_callback(self, callback: SentCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def callbacks(self) -> list[SentCallback]:
        """A snapshot, in the order the POSTs were answered."""
        with self._lock:
            return list(self._callbacks)
