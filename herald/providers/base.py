"""What every provider sender takes and returns, and the plumbing they share.

The pipeline hands a sender a batch and gets one `SendResult` per message back; a provider
rejecting one message must not fail the batch, so per-message errors become results, and
`transient` tells the pipeline whether retrying can help.
"""

from __future__ import annotations

import email.utils
import logging
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, ClassVar, Mapping, Protocol, Sequence
from urllib.error import URLError

import requests

from herald.contracts import Channel, Platform, Priority, utc_now_iso

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SendResult:
    """The provider's answer for one `Outgoing`, matched to it by span id."""

    span_id: str
    ok: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    transient: bool = False
    retry_after_s: float | None = None
    at: str = field(default_factory=utc_now_iso)
    """When the provider answered: the delivery's `sent_at`, not when its batch finished."""

    @classmethod
    def sent(cls, item: Outgoing, provider_message_id: str | None) -> SendResult:
        return cls(item.span_id, True, provider_message_id=provider_message_id)

    @classmethod
    def failed(cls, item: Outgoing, error: ProviderError) -> SendResult:
        return cls(item.span_id, False, error_code=error.code, error_message=error.message,
                   transient=error.transient, retry_after_s=error.retry_after_s)


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
    """A failure in Herald's terms: the provider's code, a readable message, retry or not."""

    code: str
    message: str
    transient: bool
    retry_after_s: float | None = None
    """The provider's Retry-After, when it sent one (429/503): the earliest sensible retry."""


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


def is_transient_status(status: int | None) -> bool:
    """Rate limiting and server errors may pass on retry; other 4xx say the message is wrong."""
    return status is not None and (status == 429 or status >= 500)


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
        return ProviderError("TIMEOUT", str(error), transient=True)
    if isinstance(error, OSError):
        return ProviderError("CONNECTION_ERROR", str(error), transient=True)
    if isinstance(error, ValueError):
        return ProviderError("INVALID_MESSAGE", str(error), transient=False)
    logger.error("unexpected error from the provider SDK", exc_info=error)
    return ProviderError("UNEXPECTED_ERROR", f"{type(error).__name__}: {error}", transient=False)


class PooledSender(ABC):
    """Fan-out for SDKs that make one blocking call per provider request (Twilio, SendGrid).

    A pool that lives as long as the sender, so a streaming pipeline does not start threads per
    batch; subclasses say which messages share a request (`_group`, one each by default), send
    one request, and translate their SDK's exceptions. A failed request fails all it carried.
    """

    provider: ClassVar[str]

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"herald-{self.provider}")

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

    def _attempt(self, items: list[Outgoing]) -> list[SendResult]:
        try:
            ids = self._send(items)
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
