"""Herald's callbacks pipeline: provider delivery reports from Pub/Sub into the events table.

    read callbacks (published by the ingest function after verifying the provider's signature)
    -> parse (bad -> dead letter) -> callback event joined to its delivery by span id -> BigQuery

The same topic carries the registry API's records of its changes (herald.users.RegistryChanges,
marked by REGISTRY_ATTRIBUTE), written as preference_changed / registry_changed events.

A job of its own rather than a second read in the delivery pipeline: callbacks arrive later and
in other volumes than requests, scale separately on Dataflow, and on the DirectRunner a second
Pub/Sub read would stall the single worker thread in its idle pulls.

Locally (`herald local up` starts it):  python -m pipelines.callback_pipeline --streaming
On Dataflow: the same options as pipelines.herald_pipeline, with --callbacks_subscription.
"""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from herald.callbacks import DeliveryCallback
from herald.contracts import ContractError
from herald.dead_letters import DeadLetter
from herald.events import Reason, dead_letter_event
from herald.settings import Settings
from herald.users import REGISTRY_ATTRIBUTE, RegistryChanges
from pipelines import launch
from pipelines.bigquery_sink import WriteRecords
from pipelines.heartbeat import HEARTBEAT_ATTRIBUTE
from pipelines.options import HeraldOptions, write_batching

DEAD_LETTERS = "dead_letters"


class _ParseCallback(beam.DoFn):
    def __init__(self, source_topic: str) -> None:
        self._source_topic = source_topic
        self.parsed = Metrics.counter("herald", "callbacks_parsed")
        self.invalid = Metrics.counter("herald", "callbacks_invalid")

    def process(self, message: PubsubMessage) -> Iterator[dict | TaggedOutput]:
        attributes = dict(message.attributes or {})
        if HEARTBEAT_ATTRIBUTE in attributes:
            return
        try:
            if REGISTRY_ATTRIBUTE in attributes:  # the registry API's record of its changes
                yield from RegistryChanges.from_pubsub(message.data).to_events()
                return
            callback = DeliveryCallback.from_pubsub(message.data)
        except (ContractError, ValueError, TypeError, KeyError) as error:
            self.invalid.inc()
            yield dead_letter_event(message.data, Reason.INVALID_MESSAGE, str(error))
            yield TaggedOutput(DEAD_LETTERS, DeadLetter(
                self._source_topic, Reason.INVALID_MESSAGE, message.data, attributes,
                detail=str(error)))
            return
        self.parsed.inc()
        yield callback.to_event()


class RecordCallbacks(beam.PTransform):
    """Callback messages -> (main) event rows, invalid ones as `dead_letter` events, and
    (`dead_letters`) the invalid ones as DeadLetters replayable to `source_topic`."""

    def __init__(self, source_topic: str) -> None:
        super().__init__()
        self._source_topic = source_topic

    def expand(self, messages):
        return messages | "ParseCallbacks" >> beam.ParDo(
            _ParseCallback(self._source_topic)).with_outputs(DEAD_LETTERS, main="events")


def build(pipeline: beam.Pipeline, settings: Settings, options: HeraldOptions) -> None:
    recorded = (pipeline
                | "ReadCallbacks" >> beam.io.ReadFromPubSub(
                    subscription=settings.subscription_path(settings.callbacks_subscription),
                    with_attributes=True)
                | "RecordCallbacks" >> RecordCallbacks(settings.callbacks_topic))
    ((recorded.events, recorded[DEAD_LETTERS])
     | "Write" >> WriteRecords(settings, options.batch_shards, write_batching(options)))


if __name__ == "__main__":
    launch.main(build, lambda settings: settings.callbacks_topic)
