"""DedupeDeliveries: a Pub/Sub redelivery of a delivery already seen is dropped; every other
delivery goes on to its send branch, where the durable claim (pipelines/claims.py) decides it.

Follows Beam's `DeduplicatePerKey`: keyed state remembers each delivery it saw under a key (its
trace and span) and a processing-time timer forgets it after the TTL, so a Pub/Sub *redelivery*
of the same message (same trace, same span) is dropped silently (its events already exist, with
the same ids), whether or not another delivery holds its address.
A delivery whose (notificationId, channel, address) another one holds (a second *request* with
the same notificationId, another trace; or a second delivery of one bulk request to the same
address, two users sharing an email: same trace, another span) is counted `contested` and goes on
too: the durable claim records it as `duplicate`. Keyed state does not decide that: a restarted
pipeline's state starts empty and may meet the two in the other order than the run that sent one
of them, and calling the delivery the provider took a `duplicate` would lose its send from the
analytics. Only the durable claim knows which of them the provider saw.
Opted-out deliveries (`Delivery.skip`) go on as well, and are remembered like any other, so a
redelivery that is planned differently (the device was disabled meanwhile) cannot add a second
terminal event. They are not recorded here: an earlier run may have sent one before its opt-out
(a STOP reply), and only its claim says so (`SendClaims.settle_unsent`).
A replay of a dead-lettered delivery (`herald dlq replay`) holds the claim under its own token
(`Envelope.claim_token`): it passes once, and its own redelivery is dropped.

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

from pipelines.delivery import Delivery

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
bucket: every delivery seen with that key, so their redeliveries are dropped."""


class _DropRedeliveries(beam.DoFn):
    CLAIMS = ReadModifyWriteStateSpec("claims", PickleCoder())
    SWEEP = TimerSpec("sweep", TimeDomain.REAL_TIME)

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput]) -> None:
        self._ttl_s = ttl_s
        self._route = route
        self.unique = Metrics.counter("herald", "deliveries_unique")
        self.contested = Metrics.counter("herald", "deliveries_contested")
        self.redelivered = Metrics.counter("herald", "deliveries_redelivered")

    def process(self, keyed: tuple[str, Delivery], state=beam.DoFn.StateParam(CLAIMS),
                sweep=beam.DoFn.TimerParam(SWEEP)) -> Iterator[TaggedOutput]:
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
        contested = bool(seen) and mine is None  # another delivery has the address
        expiry = Timestamp.of(time.time() + self._ttl_s)
        if not any(claims.values()):  # the bucket's first live claim: it expires first
            sweep.set(expiry)
        seen[delivery.span_id] = (envelope.claim_token, expiry.micros)
        state.write(claims)
        (self.contested if contested else self.unique).inc()
        yield self._route(delivery)

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
    """(bucket, Delivery) pairs (keyed by `Bucketing`) -> every delivery but the redeliveries of
    one seen within the TTL, tagged by `route` into `branches`."""

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput],
                 branches: Sequence[str]) -> None:
        super().__init__()
        self._ttl_s = ttl_s
        self._route = route
        self._branches = tuple(branches)

    def expand(self, keyed_deliveries):
        return keyed_deliveries | "DropRedeliveries" >> beam.ParDo(
            _DropRedeliveries(self._ttl_s, self._route)).with_outputs(*self._branches)
