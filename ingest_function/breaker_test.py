"""The breaker's states through its public interface, with calls and probes as futures the test
completes (what a Pub/Sub publish returns)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import pytest

from ingest_function.breaker import CircuitBreaker, CircuitOpen, SlowCall, State

SLOW_S = 0.2


def done(result: Any = "ok") -> Callable[[], Future]:
    def start() -> Future:
        future: Future = Future()
        future.set_result(result)
        return future
    return start


def failing(error: BaseException) -> Callable[[], Future]:
    def start() -> Future:
        future: Future = Future()
        future.set_exception(error)
        return future
    return start


def never() -> Future:
    return Future()


class Probes:
    """The breaker's probe: each probe is a future the test answers."""

    def __init__(self) -> None:
        self.started: list[Future] = []
        self.made = threading.Semaphore(0)

    def __call__(self) -> Future:
        future: Future = Future()
        self.started.append(future)
        self.made.release()
        return future

    def next(self) -> Future:
        assert self.made.acquire(timeout=5), "no probe was made"
        return self.started[-1]


def breaker(probes: Probes, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("pubsub", failure_threshold=threshold, slow_call_s=SLOW_S, probe=probes,
                          probe_interval_s=0.05, probe_timeout_s=5)


def open_it(guard: CircuitBreaker, threshold: int = 3) -> None:
    for _ in range(threshold):
        with pytest.raises(ValueError):
            guard.call(failing(ValueError("down")), 1)


def wait_for(guard: CircuitBreaker, state: State) -> None:
    deadline = time.monotonic() + 5
    while guard.state is not state:
        assert time.monotonic() < deadline, f"still {guard.state}, not {state}"
        time.sleep(0.005)


def test_closed_calls_return_their_results_and_raise_their_errors() -> None:
    guard = breaker(Probes())
    assert guard.call(done(42), 1) == 42
    with pytest.raises(ValueError, match="refused"):
        guard.call(failing(ValueError("refused")), 1)
    assert guard.state is State.CLOSED


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    guard = breaker(Probes())
    for _ in range(5):
        for _ in range(2):
            with pytest.raises(ValueError):
                guard.call(failing(ValueError("down")), 1)
        guard.call(done(), 1)
    assert guard.state is State.CLOSED


def test_threshold_failures_open_it_and_then_calls_are_refused_without_being_made() -> None:
    probes = Probes()
    guard = breaker(probes)
    open_it(guard)
    assert guard.state in (State.OPEN, State.HALF_OPEN)
    started = []
    with pytest.raises(CircuitOpen) as refused:
        guard.call(lambda: started.append(1) or done()(), 1)
    assert started == []
    assert isinstance(refused.value.cause, ValueError)


def test_slow_calls_count_and_waiting_calls_are_released_when_it_opens() -> None:
    guard = breaker(Probes())
    began = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        waits = [pool.submit(guard.call, never, 30) for _ in range(3)]
        for wait in waits:
            with pytest.raises(CircuitOpen) as released:
                wait.result(timeout=10)
            assert isinstance(released.value.cause, SlowCall)
    assert time.monotonic() - began < 2, "released long before their 30 s timeout"
    assert guard.state is not State.CLOSED


def test_a_slow_call_that_answers_later_returns_its_result_but_still_counts() -> None:
    guard = breaker(Probes(), threshold=2)
    late: Future = Future()
    threading.Timer(SLOW_S * 2, late.set_result, ["late"]).start()
    assert guard.call(lambda: late, 5) == "late"
    assert guard.state is State.CLOSED
    with pytest.raises(CircuitOpen):
        guard.call(never, 5)  # the second slow call opens it
    assert guard.state is not State.CLOSED


def test_a_call_without_an_answer_times_out_and_counts() -> None:
    guard = breaker(Probes(), threshold=1)
    with pytest.raises(CircuitOpen) as opened:
        guard.call(never, SLOW_S / 4)  # a timeout below the slow threshold: counted as such
    assert isinstance(opened.value.cause, TimeoutError)
    guard = breaker(Probes(), threshold=2)
    with pytest.raises(TimeoutError):
        guard.call(never, SLOW_S * 1.5)
    assert guard.state is State.CLOSED


def test_open_probes_in_the_background_half_open_then_closes_on_success() -> None:
    probes = Probes()
    guard = breaker(probes)
    open_it(guard)
    first = probes.next()
    assert guard.state is State.HALF_OPEN
    with pytest.raises(CircuitOpen):
        guard.call(done(), 1)  # half-open still refuses: only the probe tests the dependency
    first.set_exception(TimeoutError("still down"))
    wait_for(guard, State.OPEN)
    second = probes.next()
    assert guard.state is State.HALF_OPEN
    second.set_result("message-id")
    wait_for(guard, State.CLOSED)
    assert guard.call(done("through"), 1) == "through"
    time.sleep(0.2)
    assert len(probes.started) == 2, "no probing once closed"


def test_once_closed_it_opens_again_after_threshold_new_failures() -> None:
    probes = Probes()
    guard = breaker(probes)
    open_it(guard)
    probes.next().set_result("ok")
    wait_for(guard, State.CLOSED)
    for _ in range(2):
        with pytest.raises(ValueError):
            guard.call(failing(ValueError("down")), 1)
    assert guard.state is State.CLOSED
    with pytest.raises(ValueError):
        guard.call(failing(ValueError("down")), 1)
    assert guard.state is not State.CLOSED
    probes.next().set_result("ok")
    wait_for(guard, State.CLOSED)
