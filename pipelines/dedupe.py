"""DedupeDeliveries: each delivery is decided at most once per TTL; a (notificationId, channel,
address) another delivery holds goes on to the durable claim.

Follows Beam's `DeduplicatePerKey`: keyed state remembers each delivery it saw under a key (its
trace and span) and a processing-time timer forgets it after the TTL, so a Pub/Sub *redelivery*
of the same message (same trace, same span) is dropped silently (its events already exist, with
the same ids), whichever delivery holds the key.
A delivery whose key another one holds (a second *request* with the same notificationId, another
trace; or a second delivery of one bulk request to the same address, two users sharing an email:
same trace, another span) goes on to the durable claim (pipelines/claims.py), which records it as
`duplicate`. Keyed state does not decide that: a restarted pipeline's state starts empty and may
meet the two in the other order than the run that sent one of them, and calling the delivery the
provider took a `duplicate` would lose its send from the analytics. Only the durable claim knows
which of them the provider saw.
Opted-out deliveries are claimed too and recorded here as `suppressed`, so a redelivery that is
planned differently (the device was disabled meanwhile) cannot add a second terminal event; one
whose address another request holds is its `duplicate`, as it always was (it is never sent, so
no claim can say otherwise).
A replay of a dead-lettered delivery (`herald dlq replay`) holds the claim under its own token
(`Envelope.claim_token`): it passes its request's claim once, and its own redelivery is dropped.

State is keyed by *bucket* (`Bucketing`): on Dataflow one bucket per dedupe key, the textbook shape.
The DirectRunner, though, scans the timers of every key it has ever seen on each scheduling pass,
so there a day of dedupe keys made each pass slower (measured: 17 requests/s fell to 3 after 8,000
keys); locally the keys share a fixed number of buckets, each a small map with one sweep timer.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from herald.events import Reason, Status
from pipelines.delivery import Delivery

EVENTS = "events"
"""Terminal events decided here: suppressed (opted out), and duplicate for an opted-out delivery
whose address another request holds (nothing is sent either way)."""


class Bucketing:
    """The state key of a delivery: its dedupe key (`buckets` = 0), or one of `buckets` shared
    keys. Deliveries reach DedupeDeliveries keyed by this."""

    def __init__(self, buckets: int) -> None:
        self._buckets = buckets

    def __call__(self, delivery: Delivery) -> str:
        key = delivery.dedupe_key
        return key if self._buckets == 0 else str(zlib.crc32(key.encode()) % self._buckets)


Claims = dict[str, dict[str, tuple[str, int]]]
"""dedupe key -> {span id: (claim token, expiry in epoch microseconds, as timers count)} for one
bucket: every delivery seen with that key, the first one first (the key's holder here)."""


class _FirstClaimWins(beam.DoFn):
    CLAIMS = ReadModifyWriteStateSpec("claims", PickleCoder())
    SWEEP = TimerSpec("sweep", TimeDomain.REAL_TIME)

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput]) -> None:
        self._ttl_s = ttl_s
        self._route = route
        self.unique = Metrics.counter("herald", "deliveries_unique")
        self.suppressed = Metrics.counter("herald", "deliveries_suppressed")
        self.duplicates = Metrics.counter("herald", "deliveries_duplicate")
        self.contested = Metrics.counter("herald", "deliveries_contested")
        self.redelivered = Metrics.counter("herald", "deliveries_redelivered")

    def process(self, keyed: tuple[str, Delivery], state=beam.DoFn.StateParam(CLAIMS),
                sweep=beam.DoFn.TimerParam(SWEEP)) -> Iterator[Delivery | TaggedOutput]:
        _, delivery = keyed
        claims: Claims = state.read() or {}
        envelope = delivery.envelope
        seen = claims.setdefault(delivery.dedupe_key, {})  # held until the sweep forgets it
        mine = seen.get(delivery.span_id)
        replay = mine is not None and bool(envelope.scope.replay_id) and (
            mine[0] != envelope.claim_token)
        if mine is not None and not replay:  # a redelivery of a delivery seen, contested or not
            self.redelivered.inc()
            return
        holder = next(iter(seen.values()))[0] if seen and mine is None else None
        expiry = Timestamp.of(time.time() + self._ttl_s)
        if not any(claims.values()):  # the bucket's first live claim: it expires first
            sweep.set(expiry)
        seen[delivery.span_id] = (envelope.claim_token, expiry.micros)
        state.write(claims)
        if holder is None:  # the key's first delivery here, or a replay of it taking it over
            if delivery.skip is not None:
                self.suppressed.inc()
                yield TaggedOutput(EVENTS, delivery.event(Status.SUPPRESSED,
                                                          reason=delivery.skip.value))
            else:
                self.unique.inc()
                yield self._route(delivery)
        elif delivery.skip is not None:  # never sent, so no claim can contradict this
            yield TaggedOutput(EVENTS, self._not_sent(delivery, same_request=holder.startswith(
                envelope.trace_id)))
        else:  # another delivery has the address: the durable claim decides which one sends
            self.contested.inc()
            yield self._route(delivery)

    def _not_sent(self, delivery: Delivery, same_request: bool) -> dict:
        """An opted-out delivery whose address another holds: `suppressed` when that one is of the
        same request (a household member's opt-out is still theirs), else `duplicate` (a
        sender's repeat of a notification)."""
        if same_request:
            self.suppressed.inc()
            return delivery.event(Status.SUPPRESSED, reason=delivery.skip.value)
        self.duplicates.inc()
        return delivery.event(Status.DUPLICATE, reason=Reason.DUPLICATE_NOTIFICATION.value)

    @on_timer(SWEEP)
    def expire(self, fired=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(CLAIMS),
               sweep=beam.DoFn.TimerParam(SWEEP)) -> None:
        """Forget the claims due by the time the timer was set for (the runner's processing
        clock, which a test may drive); wake again when the oldest remaining one is due."""
        live = {key: kept for key, seen in (state.read() or {}).items()
                if (kept := {span: claim for span, claim in seen.items()
                             if claim[1] > fired.micros})}
        if live:
            state.write(live)
            sweep.set(Timestamp(micros=min(expiry for seen in live.values()
                                           for _, expiry in seen.values())))
        else:
            state.clear()


class DedupeDeliveries(beam.PTransform):
    """(bucket, Delivery) pairs (keyed by `Bucketing`) -> first claims to send, tagged by `route`
    into `branches`, and (`events`) suppressed and duplicate events."""

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput],
                 branches: Sequence[str]) -> None:
        super().__init__()
        self._ttl_s = ttl_s
        self._route = route
        self._branches = tuple(branches)

    def expand(self, keyed_deliveries):
        return keyed_deliveries | "FirstClaimWins" >> beam.ParDo(
            _FirstClaimWins(self._ttl_s, self._route)).with_outputs(EVENTS, *self._branches)
