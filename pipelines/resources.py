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
