"""ParseRequests: Pub/Sub messages -> Envelopes, with anything malformed dead-lettered, never raised."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.pvalue import TaggedOutput

from herald.contracts import Envelope
from herald.dead_letters import DeadLetter
from herald.events import Reason, Status, dead_letter_event, request_event
from herald.contracts import HEARTBEAT_ATTRIBUTE

DEAD_LETTER = "dead_letter"
DEAD_LETTERS = "dead_letters"
ACCEPTED = "accepted"


class _ParseEnvelope(beam.DoFn):
    def __init__(self, source_topic: str) -> None:
        self._source_topic = source_topic
        self.parsed = Metrics.counter("herald", "requests_parsed")
        self.invalid = Metrics.counter("herald", "requests_invalid")
        self.heartbeats = Metrics.counter("herald", "heartbeats")

    def process(self, message: PubsubMessage) -> Iterator[Envelope | TaggedOutput]:
        if HEARTBEAT_ATTRIBUTE in (message.attributes or {}):
            self.heartbeats.inc()
            return
        data, attributes = message.data, dict(message.attributes or {})
        try:
            envelope = Envelope.from_pubsub(data, attributes)
        except Exception as error:  # noqa: BLE001 - whatever a message holds, it is parked, never raised
            self.invalid.inc()
            yield TaggedOutput(DEAD_LETTER, dead_letter_event(data, Reason.INVALID_MESSAGE, str(error)))
            yield TaggedOutput(DEAD_LETTERS, DeadLetter(self._source_topic, Reason.INVALID_MESSAGE,
                                                        data, attributes, detail=str(error)))
            return
        self.parsed.inc()
        yield envelope
        if envelope.page is None:  # an audience send's next pages were accepted with its first
            yield TaggedOutput(ACCEPTED, request_event(envelope, Status.ACCEPTED))


class ParseRequests(beam.PTransform):
    """Outputs Envelopes (main), their `accepted` events, `dead_letter` events and, for the
    dead-letter sink, `dead_letters` (herald.dead_letters.DeadLetter, replayable to `source_topic`).

    The accepted event is emitted here rather than by a Map downstream: one step fewer per
    bundle, which is what the DirectRunner's cost is counted in."""

    def __init__(self, source_topic: str) -> None:
        super().__init__()
        self._source_topic = source_topic

    def expand(self, messages):
        return messages | "Parse" >> beam.ParDo(_ParseEnvelope(self._source_topic)).with_outputs(
            DEAD_LETTER, DEAD_LETTERS, ACCEPTED, main="envelopes")
