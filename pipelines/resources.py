"""One expensive client per worker process, however often a runner re-creates the DoFn.

The DirectRunner unpickles and `setup()`s every DoFn per bundle, so a firebase app, HTTP pools or
a Firestore client built in `setup` would be rebuilt many times a second (the profile showed more
than half the pipeline's time there). Beam's `utils.shared.Shared` keeps only one object alive per
process, which is not enough for a pipeline with several clients; this handle keeps each for the
process's life. On Dataflow it is equally right: one client per worker process.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable, Generic, TypeVar

from apache_beam.transforms.async_dofn import AsyncWrapper

T = TypeVar("T")
_RESOURCES: dict[str, Any] = {}
_LOCK = threading.Lock()


class ProcessResource(Generic[T]):
    """A picklable handle: `get()` builds the object on first use in a process, then returns it."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._key = uuid.uuid4().hex
        self._factory = factory

    def get(self) -> T:
        with _LOCK:
            if self._key not in _RESOURCES:
                _RESOURCES[self._key] = self._factory()
            return _RESOURCES[self._key]


class HeldPoolAsyncWrapper(AsyncWrapper):
    """Beam's AsyncWrapper, with its thread pool held for as long as the DoFn instance lives.

    AsyncWrapper keeps each step's pool behind a `Shared` handle and does not hold it itself, so
    the pool lives only while it is the last object any handle in the process acquired (above).
    With several such steps in a process (the six send branches and the two sinks), each submit
    by one step freed the pool of the step before: every submit built a ThreadPoolExecutor and
    started its threads, 8.5% of the DirectRunner thread's time in `Thread.start` draining a
    backlog (bench/PROFILE.md of 2026-12-01), and `parallelism` bounded one short-lived pool
    rather than the step. Taking the pool in `setup` and keeping it makes it one pool per step,
    as AsyncWrapper intends, on any runner (Dataflow's workers also run every step in one
    process). The pool is never pickled: runners pickle a DoFn before its setup."""

    def setup(self) -> None:
        super().setup()
        self._held_pool = AsyncWrapper._pool[self._uuid].acquire(
            AsyncWrapper.initialize_pool(self._parallelism))
