"""ParseRequests: Pub/Sub messages -> Envelopes, with anything malformed dead-lettered, never raised."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.pvalue import TaggedOutput

from herald.contracts import ContractError, Envelope
from herald.events import Reason, Status, dead_letter_event, request_event
from pipelines.heartbeat import HEARTBEAT_ATTRIBUTE

DEAD_LETTER = "dead_letter"
ACCEPTED = "accepted"


class _ParseEnvelope(beam.DoFn):
    def __init__(self) -> None:
        self.parsed = Metrics.counter("herald", "requests_parsed")
        self.invalid = Metrics.counter("herald", "requests_invalid")
        self.heartbeats = Metrics.counter("herald", "heartbeats")

    def process(self, message: PubsubMessage) -> Iterator[Envelope | TaggedOutput]:
        if HEARTBEAT_ATTRIBUTE in (message.attributes or {}):
            self.heartbeats.inc()
            return
        data = message.data
        try:
            envelope = Envelope.from_pubsub(data)
        except (ContractError, ValueError, TypeError) as error:
            self.invalid.inc()
            yield TaggedOutput(DEAD_LETTER, dead_letter_event(data, Reason.INVALID_MESSAGE, str(error)))
            return
        self.parsed.inc()
        yield envelope
        yield TaggedOutput(ACCEPTED, request_event(envelope, Status.ACCEPTED))


class ParseRequests(beam.PTransform):
    """Outputs Envelopes (main), their `accepted` events and `dead_letter` events.

    The accepted event is emitted here rather than by a Map downstream: one step fewer per
    bundle, which is what the DirectRunner's cost is counted in."""

    def expand(self, messages):
        return messages | "Parse" >> beam.ParDo(_ParseEnvelope()).with_outputs(
            DEAD_LETTER, ACCEPTED, main="envelopes")
