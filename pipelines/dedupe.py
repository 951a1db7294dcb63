"""DedupeDeliveries: a (notificationId, channel, address) is decided at most once per TTL.

Follows Beam's `DeduplicatePerKey`: a per-key state remembers the first claim and a processing-time
timer clears it after the TTL. The claim records the trace id, so a Pub/Sub *redelivery* of the same
message (same trace) is dropped silently (its events already exist, with the same ids), while a
second *request* with the same notificationId (another trace) is recorded as `duplicate`.
Opted-out deliveries are claimed too and recorded here as `suppressed`, so a redelivery that is
planned differently (the device was disabled meanwhile) cannot add a second terminal event.
A replay of a dead-lettered delivery (`herald dlq replay`) holds the claim under its own token
(`Envelope.claim_token`): it passes its request's claim once, and its own redelivery is dropped.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from herald.events import Reason, Status
from pipelines.delivery import Delivery

EVENTS = "events"
"""Terminal events decided at the claim: suppressed (opted out) and duplicate."""


class _FirstClaimWins(beam.DoFn):
    CLAIM = ReadModifyWriteStateSpec("claimed_by_trace", StrUtf8Coder())
    EXPIRY = TimerSpec("expiry", TimeDomain.REAL_TIME)

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput]) -> None:
        self._ttl_s = ttl_s
        self._route = route
        self.unique = Metrics.counter("herald", "deliveries_unique")
        self.suppressed = Metrics.counter("herald", "deliveries_suppressed")
        self.duplicates = Metrics.counter("herald", "deliveries_duplicate")
        self.redelivered = Metrics.counter("herald", "deliveries_redelivered")

    def process(self, keyed: tuple[str, Delivery], claim=beam.DoFn.StateParam(CLAIM),
                expiry=beam.DoFn.TimerParam(EXPIRY)) -> Iterator[Delivery | TaggedOutput]:
        _, delivery = keyed
        holder, envelope = claim.read(), delivery.envelope
        if holder is None or (envelope.scope.replay_id and holder != envelope.claim_token
                              and holder.startswith(envelope.trace_id)):
            claim.write(envelope.claim_token)
            expiry.set(Timestamp.now() + Duration(seconds=self._ttl_s))
            if delivery.skip is not None:
                self.suppressed.inc()
                yield TaggedOutput(EVENTS, delivery.event(Status.SUPPRESSED,
                                                          reason=delivery.skip.value))
            else:
                self.unique.inc()
                yield self._route(delivery)
        elif holder.startswith(envelope.trace_id):  # its own claim, or one of its replays
            self.redelivered.inc()
        else:
            self.duplicates.inc()
            yield TaggedOutput(EVENTS, delivery.event(
                Status.DUPLICATE, reason=Reason.DUPLICATE_NOTIFICATION.value))

    @on_timer(EXPIRY)
    def expire(self, claim=beam.DoFn.StateParam(CLAIM)) -> None:
        claim.clear()


class DedupeDeliveries(beam.PTransform):
    """(dedupe_key, Delivery) pairs -> first claims to send, tagged by `route` into `branches`,
    and (`events`) suppressed and duplicate events."""

    def __init__(self, ttl_s: int, route: Callable[[Delivery], TaggedOutput],
                 branches: Sequence[str]) -> None:
        super().__init__()
        self._ttl_s = ttl_s
        self._route = route
        self._branches = tuple(branches)

    def expand(self, keyed_deliveries):
        return keyed_deliveries | "FirstClaimWins" >> beam.ParDo(
            _FirstClaimWins(self._ttl_s, self._route)).with_outputs(EVENTS, *self._branches)
