"""Retrying transient provider failures: exponential backoff with jitter, Retry-After honoured,
a bounded total time.

Novu sends once and treats 429/503 as final; Herald retries what can pass on retry (rate limits,
5xx, timeouts, connection errors) and stops at once on what cannot (an invalid token or number, a
4xx). A batch is retried as a whole step: only its transiently failed messages are sent again.

A provider that asks for a longer wait than `RetryPolicy.max_inline_wait_s` (FCM QUOTA_EXCEEDED's
minute, a SendGrid X-RateLimit-Reset) is not waited for here, holding a worker thread: the message
is settled as `deferred` and the pipeline sends it again after the wait (pipelines/send.py). So is
a rate-limited message whose inline retries ran out: being rate limited is never a dead letter.

A retry after a timeout can duplicate: the provider may have accepted the first attempt and the
answer was lost. The send claims (pipelines/claims.py) stop a second copy of a request from
sending again, not this: a retry is the claim holder's own attempt.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from herald.providers.base import ErrorClass, Outgoing, SendResult, Sender


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The default budget keeps a retried message inside a minute; the SLO
    (handed to the provider within 10 s) is measured on first attempts."""

    max_attempts: int = 6
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    deadline_s: float = 45.0
    max_inline_wait_s: float = 10.0
    """The longest wait spent in a worker thread; a provider asking for more defers the message."""

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Exponential backoff with "equal jitter" (half fixed, half random), never sooner than
        the provider asked for."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return max(backoff * rng.uniform(0.5, 1.0), retry_after_s or 0.0)


@dataclass(frozen=True)
class Outcome:
    """The last answer for a message and how many attempts it took."""

    result: SendResult
    attempts: int

    @property
    def deferred(self) -> bool:
        """The provider asked Herald to wait (rate limited, or a wait it named): send later."""
        return not self.result.ok and self.result.transient and (
            self.result.error_class is ErrorClass.RATE_LIMITED
            or self.result.retry_after_s is not None)

    @property
    def exhausted(self) -> bool:
        """Still failing transiently when the policy gave up, with no wait asked for: a dead
        letter, not a failure."""
        return not self.result.ok and self.result.transient and not self.deferred


Settled = Callable[[list[tuple[int, Outcome]]], None]
"""Told, after each attempt, the (index in the batch, final Outcome) of the messages it settled."""


def send_with_retries(sender: Sender, batch: Sequence[Outgoing], policy: RetryPolicy, *,
                      on_settled: Settled | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      rng: random.Random | None = None) -> list[Outcome]:
    """One Outcome per message, in input order. `on_settled` hears of each message as soon as
    nothing more will be tried for it, before the others' retries wait out their backoff: the
    pipeline records a send on its claim then, so a crash during a retry's backoff does not leave
    the batch's already delivered messages with an unknown outcome."""
    rng = rng or random.Random()
    outcomes: dict[int, Outcome] = {}
    pending = list(range(len(batch)))
    started = clock()
    for attempt in range(1, policy.max_attempts + 1):
        results = sender.send([batch[index] for index in pending])
        retry, delays = [], []
        for index, result in zip(pending, results, strict=True):
            outcomes[index] = Outcome(result, attempt)
            delay = policy.delay(attempt, result.retry_after_s, rng)
            if not result.ok and result.transient and delay <= policy.max_inline_wait_s:
                retry.append(index)
                delays.append(delay)
        wait = max(delays, default=0.0)
        if attempt == policy.max_attempts or clock() - started + wait > policy.deadline_s:
            retry = []  # given up: the transient failures are final too
        settled = [(index, outcomes[index]) for index in pending if index not in retry]
        if on_settled is not None and settled:
            on_settled(settled)
        if not retry:
            break
        sleep(wait)
        pending = retry
    return [outcomes[index] for index in range(len(batch))]
