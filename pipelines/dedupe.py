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
(`Envelope.claim_token`): it passes once, and its own redelivery is dropped, even one that comes
after a later replay of the same delivery (every token seen is remembered, not only the last: a
late redelivery of the first replay would otherwise reach the claim again, and take over the
second replay's send in flight).

State is keyed by *bucket* (`Bucketing`): on Dataflow one bucket per dedupe key, the textbook shape.
The DirectRunner, though, scans the timers of every key it has ever seen on each scheduling pass,
so there a day of dedupe keys made each pass slower (measured: 17 requests/s fell to 3 after 8,000
keys); locally the keys share a fixed number of buckets, each a small map with one sweep timer.
"""

from __future__ import annotations

import hashlib
import struct
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


RECORD = struct.Struct(">QQq")
"""One delivery seen under a dedupe key: digests (`digest`) of its span id and its claim token,
and when it is forgotten (epoch microseconds, as timers count)."""

Claims = dict[int, bytes]
"""One bucket's state: digest of a dedupe key -> every delivery seen with that key, as packed
RECORDs, so their redeliveries are dropped. Packed because the runner pickles and unpickles a
bucket's whole state on every read and write, and on the DirectRunner a bucket holds thousands of
keys: two objects per key instead of six made that about 5x cheaper (0.2 against 1.07 ms for 1,300
keys; it grew with the backlog drained, `herald bench --parts growth`)."""


def digest(text: str) -> int:
    """A 64-bit digest (BLAKE2b) standing for an id in the state: two ids of one key would have
    to collide for a delivery to be taken for another's redelivery."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _pack(records: Sequence[tuple[int, int, int]]) -> bytes:
    return b"".join(RECORD.pack(*record) for record in records)


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
        key, span, token = (digest(delivery.dedupe_key), digest(delivery.span_id),
                            digest(envelope.claim_token))
        seen = list(RECORD.iter_unpack(claims.get(key, b"")))  # held until the sweep forgets it
        mine = {held for seen_span, held, _ in seen if seen_span == span}  # its tokens seen
        if mine and (token in mine or not envelope.scope.replay_id):
            self.redelivered.inc()  # a redelivery of a delivery (or replay) seen, contested or not
            return
        contested = bool(seen) and not mine  # another delivery has the address
        expiry = Timestamp.of(time.time() + self._ttl_s)
        if not claims:  # the bucket's first live claim: it expires first
            sweep.set(expiry)
        claims[key] = _pack([*seen, (span, token, expiry.micros)])
        state.write(claims)
        (self.contested if contested else self.unique).inc()
        yield self._route(delivery)

    @on_timer(SWEEP)
    def expire(self, fired=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(CLAIMS),
               sweep=beam.DoFn.TimerParam(SWEEP)) -> None:
        """Forget the claims due by the time the timer was set for (the runner's processing
        clock, which a test may drive); wake again when the oldest remaining one is due."""
        live: Claims = {}
        soonest: int | None = None  # the earliest expiry kept
        for key, packed in (state.read() or {}).items():
            kept = [record for record in RECORD.iter_unpack(packed) if record[2] > fired.micros]
            if kept:
                live[key] = _pack(kept)
                first = min(expiry for _, _, expiry in kept)
                soonest = first if soonest is None else min(soonest, first)
        if live:
            state.write(live)
            sweep.set(Timestamp(micros=soonest))
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
