"""The sandbox's knobs: latency, a seed, and per provider the faults and outcomes real providers
show.

Real providers fail in a few ways Herald must survive: rate limiting (429 with Retry-After), server
errors (500, 503), requests that never get an answer, and permanent rejections; and the delivery
callbacks of Twilio and SendGrid report bounces, arrive late, twice, or out of order. Each of these
is a rate in [0, 1] drawn from one seeded random stream, so a test can ask for "10% of SMS
rate-limited" and get a reproducible run.

`SandboxSettings` is both the `--faults` JSON of `python -m herald.sandbox` and the body of
`POST /_config`; provider objects are merged key by key, so `{"twilio": {"timeout": 0.2}}` changes
that one knob. Everything is frozen and swapped whole, so a handler never sees a half-applied
change.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from dataclasses import Field, asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Mapping, Self, Sequence, TypeVar

from herald.providers.fcm.export import SdkPlatform

T = TypeVar("T")


class Fault(StrEnum):
    """How a provider request can fail; each value names its rate knob."""

    RATE_LIMITED = "rate_limited"
    """429 with Retry-After."""
    SERVER_ERROR = "server_error"
    """500."""
    UNAVAILABLE = "unavailable"
    """503."""
    TIMEOUT = "timeout"
    """No answer: the sandbox waits `timeout_s`, closes the connection and records nothing.

    That is the case of a request lost before the provider took it. A real provider can also
    take a request and then fail to answer, so the client cannot tell the two apart: Herald
    treats a timeout as "unknown, retry", which can send twice. Twilio and SendGrid have no
    idempotency key for sends, and FCM none either, where firebase-admin itself re-POSTs once
    on a read timeout, so a timed-out push is the likeliest duplicate on a user's device.
    """
    PERMANENT = "permanent"
    """A 4xx that retrying cannot fix (the provider's own "invalid recipient" kind of error)."""
    CONFIGURATION = "configuration"
    """Herald's credentials or project are wrong: FCM SENDER_ID_MISMATCH, Twilio 20003, SendGrid
    401."""


def _rate(group: str) -> Any:
    """A probability knob. Rates in one group are exclusive outcomes of one draw (a request is
    rate-limited or times out, not both), so they must sum to at most 1."""
    return field(default=0.0, metadata={"group": group})


def _check_number(name: str, value: Any, *, integer: bool = False) -> None:
    """JSON numbers only (a bool is an int to Python, not to a user), and none negative."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        raise ValueError(f"{name} must be a non-negative {'integer' if integer else 'number'}")


def _unknown(settings: Any, changes: Mapping[str, Any], what: str) -> None:
    unknown = set(changes) - {f.name for f in fields(settings)}
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}")


class _Validated:
    """Checks every numeric knob on construction, so no invalid value can exist in a settings
    object, whether it came from a flag, `--faults` or `POST /_config`."""

    def __post_init__(self) -> None:
        sums: dict[str, list[Field[Any]]] = defaultdict(list)
        for knob in fields(self):  # type: ignore[arg-type]
            value = getattr(self, knob.name)
            _check_number(knob.name, value, integer=type(knob.default) is int)
            group = knob.metadata.get("group")
            if group is not None:
                if value > 1:
                    raise ValueError(f"{knob.name} is a rate and must be at most 1")
                sums[group].append(knob)
        for knobs in sums.values():
            if sum(getattr(self, knob.name) for knob in knobs) > 1 + 1e-9:  # float sums
                raise ValueError(f"{' + '.join(k.name for k in knobs)} must be at most 1")

    def updated(self, changes: Mapping[str, Any]) -> Self:
        """A copy with `changes` applied; ValueError names an unknown knob or a bad value."""
        _unknown(self, changes, type(self).__name__)
        return replace(self, **changes)


@dataclass(frozen=True)
class ProviderFaults(_Validated):
    """Request faults, drawn once per provider request before it is even parsed, because a real
    provider's 429 or 503 comes from its front door: a faulted request is never validated,
    accepted, recorded in the ledger or called back about."""

    rate_limited: float = _rate("request")
    server_error: float = _rate("request")
    unavailable: float = _rate("request")
    timeout: float = _rate("request")
    permanent: float = _rate("request")
    configuration: float = _rate("request")
    retry_after_s: int = 1
    """How long every 429 asks to wait: Retry-After for FCM and Twilio, X-RateLimit-Reset (now
    plus this, in epoch seconds) for SendGrid, each as its provider says it."""
    timeout_s: float = 35.0
    """How long a timed-out request hangs; longer than the senders' default 30 s client timeout."""

    def draw(self, dice: Dice) -> Fault | None:
        """The fault this request gets, if any."""
        return dice.pick([(fault, getattr(self, fault.value)) for fault in Fault])


@dataclass(frozen=True)
class FcmFaults(ProviderFaults):
    """Plus what happens to a push after FCM accepted it, which FCM never calls back about: the
    share its BigQuery export reports delivered and when, written to the export table; and the
    share whose app posts receipts (herald/sandbox/push_outcomes.py).

    FCM exports MESSAGE_DELIVERED only from apps that enabled delivery data export (Android SDK
    20.1.0+, iOS SDK 8.6.0+, Web SDK 9.0.0+,
    https://firebase.google.com/docs/cloud-messaging/understand-delivery): one share per
    platform, iOS and web 0 by default (their apps have not enabled it; Herald's dbt var
    fcm_export_platforms says android), a push to an unknown platform never."""

    delivered: float = _rate("delivered")
    """The share of accepted Android pushes the export reports delivered."""
    delivered_ios: float = _rate("delivered_ios")
    """The same for iOS pushes: 0 unless the app enabled delivery export."""
    delivered_web: float = _rate("delivered_web")
    """The same for web pushes: 0 unless the app enabled delivery export."""
    export_delay_ms: float = 200.0
    """From acceptance to the export's MESSAGE_ACCEPTED row; MESSAGE_DELIVERED follows as long
    again after it."""
    received: float = _rate("received")
    """The share of accepted pushes (any platform) whose app posts a `received` receipt."""
    opened: float = _rate("opened")
    """The share of those received that the user opens: the app then posts `opened` too."""
    receipt_delay_ms: float = 200.0
    """From acceptance to the `received` receipt, and from it to the `opened` one."""

    def delivered_share(self, platform: SdkPlatform) -> float:
        """The share of accepted pushes to `platform` the export reports delivered."""
        return {SdkPlatform.ANDROID: self.delivered, SdkPlatform.IOS: self.delivered_ios,
                SdkPlatform.WEB: self.delivered_web}.get(platform, 0.0)


@dataclass(frozen=True)
class CallbackFaults(ProviderFaults):
    """Plus, for providers that call back, when and how faithfully they do it (each callback is
    duplicated, and each message's callbacks reversed, independently at these rates)."""

    callback_delay_ms: float = 200.0
    """From acceptance to the first callback, and between one message's callbacks."""
    duplicate_callbacks: float = _rate("duplicate")
    reordered_callbacks: float = _rate("reordered")


@dataclass(frozen=True)
class TwilioFaults(CallbackFaults):
    """Final SMS outcomes; the rest are delivered."""

    undelivered: float = _rate("outcome")
    failed: float = _rate("outcome")


@dataclass(frozen=True)
class SendGridFaults(CallbackFaults):
    """Final email outcomes (deferred mail is delivered after its deferral; the rest are delivered
    at once), then opens among the delivered and clicks among the opened (mail with an HTML part
    only), and spam reports among the delivered (the recipient's opt-out)."""

    bounce: float = _rate("outcome")
    dropped: float = _rate("outcome")
    deferred: float = _rate("outcome")
    open: float = _rate("open")
    click: float = _rate("click")
    spamreport: float = _rate("spamreport")


@dataclass(frozen=True)
class SandboxSettings:
    """Everything `POST /_config` may change at runtime."""

    latency_ms: float = 100.0
    """Delay before every provider answer, faults included."""
    seed: int | None = None
    """Seeds the dice when set (at start or at runtime); None draws from system entropy."""
    fcm: FcmFaults = field(default_factory=FcmFaults)
    twilio: TwilioFaults = field(default_factory=TwilioFaults)
    sendgrid: SendGridFaults = field(default_factory=SendGridFaults)

    def __post_init__(self) -> None:
        _check_number("latency_ms", self.latency_ms)
        if self.seed is not None:
            _check_number("seed", self.seed, integer=True)

    def updated(self, changes: Mapping[str, Any]) -> SandboxSettings:
        """A copy with `changes` applied, provider objects merged knob by knob."""
        _unknown(self, changes, "sandbox")
        merged = dict(changes)
        for provider in ("fcm", "twilio", "sendgrid"):
            if provider in changes:
                if not isinstance(changes[provider], Mapping):
                    raise ValueError(f"{provider} must be an object of fault settings")
                merged[provider] = getattr(self, provider).updated(changes[provider])
        return replace(self, **merged)

    def faults(self, provider: str) -> ProviderFaults:
        """The knobs of `provider` ("fcm", "twilio" or "sendgrid")."""
        return getattr(self, provider)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Dice:
    """One random stream for every handler thread, behind a lock so that a seed reproduces the
    sequence of draws (which request gets which draw still follows arrival order)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._random.seed(seed)

    def chance(self, rate: float) -> bool:
        """True with probability `rate`."""
        with self._lock:
            return self._random.random() < rate

    def pick(self, options: Sequence[tuple[T, float]]) -> T | None:
        """At most one of exclusive `(outcome, rate)` options, from a single draw."""
        with self._lock:
            draw = self._random.random()
        for outcome, rate in options:
            if draw < rate:
                return outcome
            draw -= rate
        return None
