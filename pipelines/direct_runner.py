"""Four fixes to the streaming DirectRunner: its costs per bundle, which bound the local pipeline's
rate, and its blocking reads, which delayed every timer.

The runner executes every bundle of every step on one thread, paying a fixed cost per bundle, so
what matters is how many bundles an element travels in and what each one costs.

1. Pub/Sub reads of 100 messages, not 10 (`tune_pubsub_pulls`). The runner's read pulls at most
   10 messages per bundle, so each request paid its share of a bundle of every downstream step.
   Measured with `herald bench --quick --parts backlog`: 38.8 requests/s with 10, 60.9 with 100,
   62.8 with 500. Each pull is still acknowledged as it is read, as before.

   Reads that do not block (also `tune_pubsub_pulls`). The runner's read waits in its pull until
   a message comes or 30 s pass, on the one thread every step shares, so no processing-time timer
   (a batch flush, AsyncWrapper's collection of finished sends) fires meanwhile. A 1 s heartbeat
   message on the topic used to end such waits; the urgent lane's sends then waited for it, up to
   a second (`herald bench --parts priority`: p50 0.46 s, p99 1.13 s behind 3,000 routine
   requests). Now a pull returns at once (`return_immediately`: deprecated by Pub/Sub, which
   still serves it, as the emulator does; the client warns), and one that found nothing pauses
   IDLE_PULL_WAIT_S before the runner goes on.

2. DoFn inspection, done once per DoFn kind (`memoize_dofn_specs`). Profiled on the local stack
   under load (py-spy, 15 s): 47% of the delivery pipeline's CPU went to
   `apache_beam.transforms.userstate.get_dofn_specs`, which the runner calls for every bundle of
   every step (`is_stateful_dofn` while scheduling, again in `_ParDoEvaluator.start_bundle`) and
   which walks every method of the DoFn through `inspect.signature`. The answer (which state and
   timer specs the DoFn declares) depends only on its class and, for a `Map`/`FlatMap`, on the
   wrapped function's code, never on the instance the runner has just unpickled, so it is
   computed once per such kind.

3. One copy of each DoFn, reused by every bundle of its step, its methods inspected once
   (`reuse_dofn_copies`). For every bundle of every step the runner pickles the step's DoFn and
   unpickles a fresh copy (`pickler.roundtrip`, its "pickle test"), and then inspects every method
   of that copy again (`core.get_function_arguments`, through `inspect.signature`, called by the
   compiled DoFnSignature). Profiled draining a backlog (`herald bench --profile --parts
   backlog`): 23% of the runner thread's wall time in the roundtrip and 11-16% in that
   inspection. The first bundle still roundtrips (so a DoFn that cannot be pickled still fails
   locally as on Dataflow); later bundles get that copy again, and the inspection's answer for
   it. Setup, start_bundle, finish_bundle and teardown still run per bundle as before. Reusing an
   instance across bundles is what Dataflow's workers do, so a DoFn that relied on a fresh copy
   would be wrong there too; and the runner runs one bundle at a time (its executor has one
   thread), so no two bundles share the copy at once.

Only `pipelines.launch` installs these (`tune`), and only on the DirectRunner: Dataflow reads
Pub/Sub with its own native source, which blocks no timer, and inspects DoFns once at job
submission.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Callable, Hashable

from apache_beam.internal import pickler
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import core
from apache_beam.transforms import userstate

Specs = tuple[set, set]
PULL_MAX_MESSAGES = 100
"""Messages per DirectRunner read bundle (Beam's evaluator asks for 10)."""
IDLE_PULL_WAIT_S = 0.05
"""How long a read that found nothing holds the runner's thread before it goes on (and reads
again): the longest a timer waits for an idle read, against an idle pipeline's CPU for polling.
Measured: an idle local stack's pipelines use 0.05 cores each, its Pub/Sub emulator 0.07;
`herald bench --parts priority --pipeline-workers 2` gave high-priority p50/p99 0.38/0.74 s
(0.46/0.88 s at 0.1)."""


def tune() -> None:
    """Every fix; idempotent."""
    memoize_dofn_specs()
    tune_pubsub_pulls()
    reuse_dofn_copies()


class _TunedPulls:
    """The runner's subscriber client: pulls of up to `max_messages` whatever the evaluator asks,
    returning at once, and a pause of `idle_wait_s` after one that found nothing."""

    def __init__(self, client: Any, max_messages: int, idle_wait_s: float) -> None:
        self._client = client
        self._max_messages = max_messages
        self._idle_wait_s = idle_wait_s

    def pull(self, subscription: str, max_messages: int, timeout: float) -> Any:
        response = self._client.pull(subscription=subscription, timeout=timeout,
                                     max_messages=max(max_messages, self._max_messages),
                                     return_immediately=True)
        if not response.received_messages:
            time.sleep(self._idle_wait_s)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def tune_pubsub_pulls(max_messages: int = PULL_MAX_MESSAGES,
                      idle_wait_s: float = IDLE_PULL_WAIT_S) -> None:
    """Wrap the client the read evaluator caches per transform (see `_TunedPulls`)."""
    evaluator = transform_evaluator._PubSubReadEvaluator
    if getattr(evaluator._get_subscriber_client, "tuned", False):
        return
    original = evaluator._get_subscriber_client.__func__

    def get_subscriber_client(cls: type, transform: Any) -> _TunedPulls:
        return _TunedPulls(original(cls, transform), max_messages, idle_wait_s)

    get_subscriber_client.tuned = True  # type: ignore[attr-defined]
    evaluator._get_subscriber_client = classmethod(get_subscriber_client)


def _kind(dofn: Any) -> Hashable:
    """What a DoFn's declared specs depend on: its class, plus, for a Map or FlatMap, the code of
    the function whose parameters it inspects (unwrapping a functools.partial)."""
    argspec_fn = getattr(dofn, "_process_argspec_fn", None)
    if argspec_fn is None:
        return type(dofn)
    fn = argspec_fn()
    fn = getattr(fn, "func", fn)
    return type(dofn), getattr(fn, "__code__", None) or type(fn)


def memoize_dofn_specs() -> None:
    """Replace the runner's spec lookups by per-kind memoized ones (idempotent)."""
    if getattr(userstate.get_dofn_specs, "memoized", False):
        return
    original: Callable[[Any], Specs] = userstate.get_dofn_specs
    cache: dict[Hashable, Specs] = {}

    def get_dofn_specs(dofn: Any) -> Specs:
        kind = _kind(dofn)
        if kind not in cache:
            cache[kind] = original(dofn)
        return cache[kind]

    get_dofn_specs.memoized = True  # type: ignore[attr-defined]
    # `is_stateful_dofn` and `validate_stateful_dofn` look the name up in userstate's globals;
    # the evaluator imported it by name.
    userstate.get_dofn_specs = get_dofn_specs
    transform_evaluator.get_dofn_specs = get_dofn_specs


def reuse_dofn_copies() -> None:
    """Give each step's bundles one roundtripped copy of its DoFn, and answer the inspection of
    that copy's methods from memory (see the module's point 3); idempotent. Copies are kept for
    the process's life (a pipeline has a fixed set of steps), and only their inspections are
    remembered, so nothing else grows."""
    if isinstance(transform_evaluator.pickler, SimpleNamespace):
        return
    copies: dict[int, tuple[Any, Any]] = {}
    reused: set[int] = set()
    inspected: dict[tuple[int, str], tuple[list, list]] = {}
    get_function_arguments = core.get_function_arguments

    def roundtrip(dofn: Any) -> Any:
        if id(dofn) not in copies:  # held with its copy, so its id is never another object's
            copies[id(dofn)] = (dofn, pickler.roundtrip(dofn))
            reused.add(id(copies[id(dofn)][1]))
        return copies[id(dofn)][1]

    def remembered_arguments(obj: Any, func: str) -> tuple[list, list]:
        if id(obj) not in reused:
            return get_function_arguments(obj, func)
        if (id(obj), func) not in inspected:
            inspected[id(obj), func] = get_function_arguments(obj, func)
        args, defaults = inspected[id(obj), func]
        return list(args), list(defaults)

    # The evaluator calls `pickler.roundtrip` through the module it imported; only its view of
    # the module changes, everything else keeps Beam's pickler.
    transform_evaluator.pickler = SimpleNamespace(**{**vars(pickler), "roundtrip": roundtrip})
    # The compiled MethodWrapper looks the function up on the module each time.
    core.get_function_arguments = remembered_arguments
