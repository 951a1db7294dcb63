"""send_with_retries against a scripted sender: what is retried, when, and when it gives up."""

from __future__ import annotations

import random
from typing import Sequence

import pytest

from herald.contracts import Channel
from herald.providers.base import (ErrorClass, Outgoing, ProviderError, RateLimit, SendResult,
                                   retry_after)
from herald.providers.retry import RetryPolicy, send_with_retries

TRANSIENT = ProviderError("429", "slow down", ErrorClass.RATE_LIMITED, retry_after_s=2.0)
PERMANENT = ProviderError("21211", "invalid number", ErrorClass.UNREACHABLE)


class ScriptedSender:
    """Answers each address with the next entry of its script (an error, or None for success)."""

    provider = "scripted"

    def __init__(self, script: dict[str, list[ProviderError | None]]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    def send(self, batch: Sequence[Outgoing]) -> list[SendResult]:
        self.calls.append([item.address for item in batch])
        results = []
        for item in batch:
            error = self.script[item.address].pop(0)
            results.append(SendResult.sent(item, f"id-{item.address}") if error is None
                           else SendResult.failed(item, error))
        return results

    def close(self) -> None:
        pass


def item(address: str) -> Outgoing:
    return Outgoing(span_id=f"s-{address}", notification_id="n", channel=Channel.SMS,
                    address=address, title="t", content="c")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(script, policy=RetryPolicy()):
    sender, clock = ScriptedSender(script), FakeClock()
    outcomes = send_with_retries(sender, [item(a) for a in script], policy, sleep=clock.sleep,
                                 clock=lambda: clock.now, rng=random.Random(1))
    return outcomes, sender, clock


def test_only_transient_failures_are_retried_and_retry_after_is_honoured() -> None:
    outcomes, sender, clock = run({"a": [None], "b": [TRANSIENT, None], "c": [PERMANENT]})
    assert sender.calls == [["a", "b", "c"], ["b"]]
    assert [(o.result.ok, o.attempts) for o in outcomes] == [(True, 1), (True, 2), (False, 1)]
    assert outcomes[2].result.error_code == "21211" and not outcomes[2].exhausted
    assert clock.sleeps == [2.0]  # the provider's Retry-After beats the 0.25 s backoff


def test_backoff_grows_and_gives_up_after_max_attempts() -> None:
    no_hint = ProviderError("503", "unavailable", ErrorClass.TRANSIENT)
    outcomes, sender, clock = run({"a": [no_hint] * 4}, RetryPolicy(max_attempts=4))
    assert len(sender.calls) == 4 and outcomes[0].attempts == 4 and outcomes[0].exhausted
    assert all(later > earlier for earlier, later in zip(clock.sleeps, clock.sleeps[1:]))


def test_the_deadline_stops_retries_before_a_wait_that_would_cross_it() -> None:
    slow = ProviderError("503", "later", ErrorClass.TRANSIENT)
    outcomes, sender, clock = run({"a": [slow] * 6},
                                  RetryPolicy(deadline_s=1.0, base_delay_s=0.4))
    assert len(sender.calls) < 6 and outcomes[0].exhausted and sum(clock.sleeps) <= 1.0


@pytest.mark.parametrize("wait_s", [60.0, 3600.0])
def test_a_long_wait_the_provider_asks_for_defers_without_holding_the_thread(wait_s) -> None:
    quota = ProviderError("QUOTA_EXCEEDED", "later", ErrorClass.RATE_LIMITED, retry_after_s=wait_s)
    outcomes, sender, clock = run({"a": [quota, None]})
    assert len(sender.calls) == 1 and clock.sleeps == []
    assert outcomes[0].deferred and not outcomes[0].exhausted
    assert outcomes[0].result.retry_after_s == wait_s  # the whole wait travels on to the deferral


def test_rate_limited_past_the_retries_is_deferred_not_dead_lettered() -> None:
    busy = ProviderError("20429", "Too Many Requests", ErrorClass.RATE_LIMITED)
    outcomes, _, _ = run({"a": [busy] * 3}, RetryPolicy(max_attempts=3))
    assert outcomes[0].deferred and not outcomes[0].exhausted


@pytest.mark.parametrize("headers, seconds", [
    ({"Retry-After": "3"}, 3.0), ({"retry-after": "0.5"}, 0.5), ({}, None),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"Retry-After": "soon"}, None),
])
def test_retry_after_header_forms(headers, seconds) -> None:
    assert retry_after(headers) == seconds


def test_each_message_is_settled_once_as_soon_as_nothing_more_will_be_tried() -> None:
    settled: list[list[tuple[str, bool, int]]] = []
    sender, clock = ScriptedSender({"a": [None], "b": [TRANSIENT, TRANSIENT, None],
                                    "c": [PERMANENT],
                                    "d": [TRANSIENT, TRANSIENT, TRANSIENT]}), FakeClock()

    def record(done: list) -> None:
        settled.append([("abcd"[index], o.result.ok, o.attempts) for index, o in done])

    outcomes = send_with_retries(sender, [item(a) for a in "abcd"], RetryPolicy(max_attempts=3),
                                 on_settled=record, sleep=clock.sleep, clock=lambda: clock.now,
                                 rng=random.Random(1))
    assert settled == [[("a", True, 1), ("c", False, 1)], [("b", True, 3), ("d", False, 3)]]
    assert outcomes[3].deferred and len(clock.sleeps) == 2


def test_a_rate_limit_spaces_requests_out_after_its_burst() -> None:
    clock = FakeClock()
    limit = RateLimit(per_s=2.0, burst=2, clock=lambda: clock.now, sleep=clock.sleep)
    waits = [limit.acquire() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])  # then one every 1 / per_s
    clock.now += 10.0  # idle: the bucket refills, up to its burst only
    assert [limit.acquire() for _ in range(3)][:2] == [0.0, 0.0] and clock.sleeps[-1] == 0.5
