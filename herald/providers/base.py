"""What every provider sender takes and returns, and the plumbing they share.

The pipeline hands a sender a batch and gets one `SendResult` per message back; a provider
rejecting one message must not fail the batch, so per-message errors become results. Each failure
carries an `ErrorClass`, read from its provider's error table (`herald/providers/<provider>/
errors.py`, every row citing the documentation page it comes from), which tells the pipeline what
to do: retry, wait, disable a device, record an opt-out, or stop and call an operator.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Callable, ClassVar, Iterable, Mapping, Protocol, Sequence
from urllib.error import URLError

import requests

from herald.contracts import Channel, Platform, Priority, utc_now_iso

logger = logging.getLogger(__name__)


class ErrorClass(StrEnum):
    """What a provider's error means for Herald, whichever provider said it."""

    TOKEN_GONE = "token_gone"
    """The push token will never work again: disable the device (FCM UNREGISTERED)."""
    OPTED_OUT = "opted_out"
    """The recipient opted out with the provider (Twilio 21610): record it, send no more."""
    UNREACHABLE = "unreachable"
    """The number or address cannot receive this channel (invalid, landline, unknown)."""
    CONFIGURATION = "configuration"
    """Herald's credentials, project or sender are wrong: nothing about the recipient is known,
    so nothing is disabled; the delivery is parked loudly for an operator to replay."""
    RATE_LIMITED = "rate_limited"
    """The provider asks Herald to slow down: wait as long as it says, then send."""
    TRANSIENT = "transient"
    """The provider failed this time (5xx, timeouts): retry with backoff."""
    PERMANENT = "permanent"
    """The request itself is bad (too long, malformed): retrying cannot help."""

    @property
    def transient(self) -> bool:
        """Whether the same request may pass later."""
        return self in (ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT)


@dataclass(frozen=True)
class ErrorRow:
    """One documented error code of a provider and what it means for Herald."""

    code: str
    """The provider's code as Herald records it in `provider_code` (FCM's errorCode or canonical
    status, Twilio's numeric code, SendGrid's HTTP status)."""
    error_class: ErrorClass
    http_status: int | None
    """The HTTP status the provider documents for it; None for errors only reported later
    (Twilio's delivery-time 30xxx codes arrive in status callbacks, not in an HTTP answer)."""
    meaning: str
    """Herald's paraphrase of the documentation."""
    source: str
    """The documentation page the row comes from."""


class ErrorTable:
    """A provider's documented error codes, looked up by code; unknown codes fall back to what
    their HTTP status says (`class_of_status`)."""

    def __init__(self, rows: Iterable[ErrorRow]) -> None:
        self.rows = tuple(rows)
        self._by_code = {row.code: row for row in self.rows}
        if len(self._by_code) != len(self.rows):
            raise ValueError("an error code appears twice in the table")

    def __getitem__(self, code: str) -> ErrorRow:
        return self._by_code[code]

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def classify(self, code: str | int | None, http_status: int | None = None) -> ErrorClass:
        """The documented class of `code`; else the class its HTTP status implies."""
        row = self._by_code.get(str(code)) if code is not None else None
        return row.error_class if row is not None else class_of_status(http_status)


def class_of_status(status: int | None) -> ErrorClass:
    """What an HTTP status alone says (RFC 9110): 429 rate limited, 5xx (and no answer) transient,
    401/403 our credentials, any other 4xx the request."""
    if status is None or status >= 500:
        return ErrorClass.TRANSIENT
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (401, 403):
        return ErrorClass.CONFIGURATION
    return ErrorClass.PERMANENT


@dataclass(frozen=True)
class Outgoing:
    """One delivery to one address: an FCM token, an E.164 phone number or an email address."""

    span_id: str
    notification_id: str
    channel: Channel
    address: str
    title: str
    content: str
    priority: Priority = Priority.NORMAL
    platform: Platform | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    html: str | None = None
    """An email's HTML body (a rendered template's `email_html`), beside the plain `content`."""
    category: str | None = None
    """The request's category_type and template_type: what analysts slice deliveries by (FCM's
    analytics label is derived from them, herald/providers/fcm/labels.py)."""
    template: str | None = None


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one `Outgoing`, matched to it by span id."""

    span_id: str
    ok: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_class: ErrorClass | None = None
    retry_after_s: float | None = None
    at: str = field(default_factory=utc_now_iso)
    """When the provider answered: the delivery's `sent_at`, not when its batch finished."""

    @property
    def transient(self) -> bool:
        """A failure that may pass on retry (rate limited or transient)."""
        return self.error_class is not None and self.error_class.transient

    @classmethod
    def sent(cls, item: Outgoing, provider_message_id: str | None) -> SendResult:
        return cls(item.span_id, True, provider_message_id=provider_message_id)

    @classmethod
    def failed(cls, item: Outgoing, error: ProviderError) -> SendResult:
        return cls(item.span_id, False, error_code=error.code, error_message=error.message,
                   error_class=error.error_class, retry_after_s=error.retry_after_s)


class Sender(Protocol):
    """A provider client the pipeline can call from a DoFn (`close()` belongs in teardown)."""

    provider: str

    def send(self, batch: Sequence[Outgoing]) -> list[SendResult]:
        """One result per input, in input order; per-message failures are results, not raises."""
        ...

    def close(self) -> None:
        """Release pools and SDK apps, so a sender with the same name can be made again."""
        ...


@dataclass(frozen=True)
class ProviderError:
    """A failure in Herald's terms: the provider's code, a readable message, and its class."""

    code: str
    message: str
    error_class: ErrorClass
    retry_after_s: float | None = None
    """How long the provider asked Herald to wait (Retry-After, X-RateLimit-Reset), if it did."""

    @property
    def transient(self) -> bool:
        return self.error_class.transient


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header, in either of its forms (delta-seconds or HTTP-date)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


Classifier = Callable[[Exception], ProviderError | None]
"""A provider's translation of its SDK's exceptions; None means "not one of mine"."""


def classify_failure(error: Exception, classify: Classifier) -> ProviderError:
    """The provider's reading of `error` first, then the network and local failures all SDKs share.

    Timeouts and connection errors are transient (requests' and urllib's are OSErrors, and so
    are the builtin ones); a ValueError is an SDK refusing to build the message; anything else is
    a bug or an SDK surprise, logged with its traceback and not retried.
    """
    known = classify(error)
    if known is not None:
        return known
    if isinstance(error, (TimeoutError, requests.Timeout)) or (
            isinstance(error, URLError) and isinstance(error.reason, TimeoutError)):
        return ProviderError("TIMEOUT", str(error), ErrorClass.TRANSIENT)
    if isinstance(error, OSError):
        return ProviderError("CONNECTION_ERROR", str(error), ErrorClass.TRANSIENT)
    if isinstance(error, ValueError):
        return ProviderError("INVALID_MESSAGE", str(error), ErrorClass.PERMANENT)
    logger.error("unexpected error from the provider SDK", exc_info=error)
    return ProviderError("UNEXPECTED_ERROR", f"{type(error).__name__}: {error}",
                         ErrorClass.PERMANENT)


class RateLimit:
    """A token bucket shared by a sender's threads: on average at most `per_s` provider requests
    a second, bursts of up to `burst`. A request over the rate reserves its slot and waits for it,
    so the sender as a whole slows down instead of each message hitting the provider's quota."""

    def __init__(self, per_s: float, burst: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_s > 0 and burst >= 1")
        self._per_s, self._burst = per_s, burst
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = burst, clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one request's slot, waiting for it if need be; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s) - 1
            self._at = now
            wait = max(0.0, -self._tokens / self._per_s)
        if wait:
            self._sleep(wait)
        return wait


class PooledSender(ABC):
    """Fan-out for SDKs that make one blocking call per provider request (Twilio, SendGrid).

    A pool that lives as long as the sender, so a streaming pipeline does not start threads per
    batch; subclasses say which messages share a request (`_group`, one each by default), send
    one request, and translate their SDK's exceptions. A failed request fails all it carried.
    """

    provider: ClassVar[str]

    def __init__(self, max_workers: int, max_per_s: float | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"herald-{self.provider}")
        self._rate = RateLimit(max_per_s) if max_per_s else None

    def send(self, batch: Sequence[Outgoing]) -> list[SendResult]:
        groups = self._group(batch)
        results: dict[int, SendResult] = {}
        for indices, outcome in zip(groups, self._pool.map(
                lambda indices: self._attempt([batch[i] for i in indices]), groups)):
            results.update(zip(indices, outcome))
        return [results[index] for index in range(len(batch))]

    def close(self) -> None:
        self._pool.shutdown()

    def _group(self, batch: Sequence[Outgoing]) -> list[list[int]]:
        """Indices of the messages each provider request carries."""
        return [[index] for index in range(len(batch))]

    def _request(self, items: list[Outgoing]) -> list[str | None]:
        """`_send`, once the sender's rate limit (if any) lets another request go."""
        if self._rate is not None:
            self._rate.acquire()
        return self._send(items)

    def _attempt(self, items: list[Outgoing]) -> list[SendResult]:
        try:
            ids = self._request(items)
        except Exception as error:  # the contract: a per-message failure is a result
            failure = classify_failure(error, self._classify)
            return [SendResult.failed(item, failure) for item in items]
        return [SendResult.sent(item, provider_id) for item, provider_id in zip(items, ids, strict=True)]

    @abstractmethod
    def _send(self, items: list[Outgoing]) -> list[str | None]:
        """Make one provider request carrying `items`; the provider's id for each, in order."""

    @abstractmethod
    def _classify(self, error: Exception) -> ProviderError | None:
        """Translate this SDK's exception types; None for anything else."""
