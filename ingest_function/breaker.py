"""A circuit breaker for the edge's publishes, so a Pub/Sub outage costs a sender milliseconds.

Without it, while Pub/Sub does not answer every request waits the whole publish timeout before it
goes to the outbox. With it (the pattern as Resilience4j names it: closed, open, half-open; a
call slower than a threshold counts as failed):

    CLOSED     calls go through. A call that fails, times out or has no answer within
               `slow_call_s` counts as a failure; an answer within `slow_call_s` resets the count.
               `failure_threshold` consecutive failures open the breaker.
    OPEN       calls are refused at once (`CircuitOpen`), and calls still waiting are released
               with `CircuitOpen`, so the caller takes its fallback (the outbox) now. A background
               thread probes every `probe_interval_s`.
    HALF_OPEN  a probe is in flight; calls are still refused. The probe's success closes the
               breaker, its failure opens it again until the next probe.

Calls are futures (a Pub/Sub publish is one); a call the breaker gives up on is not cancelled
(Pub/Sub's cannot be) and may still complete later, which the caller must tolerate (the outbox
does: a request published twice is the same message, dropped by the pipeline as a redelivery).
One breaker per process: each Cloud Functions instance learns about an outage on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from enum import StrEnum
from typing import Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger("herald.ingest.breaker")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The breaker is open or half-open: the call was not made, or was given up on when the
    breaker opened while it waited. `cause` is the failure that last counted."""

    def __init__(self, name: str, cause: BaseException | None) -> None:
        super().__init__(f"{name} circuit open (last failure: {cause!r})")
        self.cause = cause


class SlowCall(Exception):
    """A call with no answer within the breaker's `slow_call_s`: counted as a failure."""


class CircuitBreaker:
    """Guards calls to one dependency (see the module docstring). Thread-safe.

    `probe` starts a harmless call to the dependency (for Pub/Sub, a heartbeat publish) and
    returns its future; it is made only from the breaker's own probe thread, and the breaker waits
    for it at most `probe_timeout_s`.
    """

    def __init__(self, name: str, *, failure_threshold: int, slow_call_s: float,
                 probe: Callable[[], Future], probe_interval_s: float,
                 probe_timeout_s: float) -> None:
        if failure_threshold < 1 or slow_call_s <= 0 or probe_interval_s <= 0:
            raise ValueError("failure_threshold >= 1, slow_call_s > 0 and probe_interval_s > 0")
        self._name = name
        self._threshold = failure_threshold
        self._slow_call_s = slow_call_s
        self._probe = probe
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._last_failure: BaseException | None = None
        self._waiting: set[threading.Event] = set()

    @property
    def state(self) -> State:
        return self._state

    def call(self, start: Callable[[], Future[T]], timeout_s: float) -> T:
        """Start a call and wait for its result, at most `timeout_s` seconds.

        Raises CircuitOpen without starting it if the breaker is not closed, or as soon as the
        breaker opens while this call waits; otherwise the call's own exception, or TimeoutError
        (both counted as failures)."""
        woken = threading.Event()  # set when the call completes or the breaker opens
        with self._lock:
            if self._state is not State.CLOSED:
                raise CircuitOpen(self._name, self._last_failure)
            self._waiting.add(woken)
        try:
            future = start()
            future.add_done_callback(lambda _: woken.set())
            return self._wait(future, woken, timeout_s)
        finally:
            with self._lock:
                self._waiting.discard(woken)

    def _wait(self, future: Future[T], woken: threading.Event, timeout_s: float) -> T:
        counted = not woken.wait(min(self._slow_call_s, timeout_s))
        if counted:
            self._failed(TimeoutError(f"no answer from {self._name} within {timeout_s} s")
                         if timeout_s <= self._slow_call_s else
                         SlowCall(f"no answer from {self._name} within {self._slow_call_s} s"))
            woken.wait(max(0.0, timeout_s - self._slow_call_s))
        if not future.done():
            if woken.is_set():  # not by the call: the breaker opened
                raise CircuitOpen(self._name, self._last_failure)
            raise TimeoutError(f"no answer from {self._name} within {timeout_s} s")
        error = future.exception()
        if error is not None:
            if not counted:
                self._failed(error)
            raise error
        if not counted:
            self._succeeded()
        return future.result()

    def _succeeded(self) -> None:
        with self._lock:
            if self._state is State.CLOSED:
                self._failures = 0

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            if self._state is not State.CLOSED:
                return  # a call that was in flight when the breaker opened
            self._failures += 1
            self._last_failure = error
            if self._failures < self._threshold:
                return
            self._state = State.OPEN
            released, self._waiting = self._waiting, set()
        log.warning("%s circuit open after %d consecutive failed or slow calls (last: %r); "
                    "probing every %s s", self._name, self._threshold, error,
                    self._probe_interval_s)
        for woken in released:
            woken.set()
        threading.Thread(target=self._probe_until_closed, name=f"{self._name}-breaker-probe",
                         daemon=True).start()

    def _probe_until_closed(self) -> None:
        while True:
            time.sleep(self._probe_interval_s)
            with self._lock:
                self._state = State.HALF_OPEN
            try:
                self._probe().result(timeout=self._probe_timeout_s)
            except Exception as error:  # noqa: BLE001 - any failure means: still down
                with self._lock:
                    self._state, self._last_failure = State.OPEN, error
                continue
            with self._lock:
                self._state, self._failures = State.CLOSED, 0
            log.warning("%s circuit closed: a probe succeeded", self._name)
            return
