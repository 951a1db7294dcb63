"""Herald's callbacks pipeline: provider delivery reports from Pub/Sub into the events table.

    read callbacks (published by the ingest function after verifying the provider's signature)
    -> parse (bad -> dead letter) -> callback event joined to its delivery by span id -> BigQuery
    opted_out callbacks -> the users with the opted-out address get the provider's opt-out in
    Firestore (Directory.record_opt_out), so later notifications are suppressed, and an event
    each; opted_in callbacks lift it (Directory.lift_opt_out)

The same topic carries the registry API's records of its changes (herald.users.RegistryChanges,
marked by REGISTRY_ATTRIBUTE), written as preference_changed / registry_changed events.

A job of its own rather than a second read in the delivery pipeline: callbacks arrive later and
in other volumes than requests, scale separately on Dataflow, and on the DirectRunner a second
Pub/Sub read would stall the single worker thread in its idle pulls.

Locally (`herald local up` starts it):  python -m pipelines.callback_pipeline --streaming
On Dataflow: the same options as pipelines.herald_pipeline, with --callbacks_subscription.
"""

from __future__ import annotations

from functools import partial
from typing import Iterator

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from herald.callback_events import DeliveryCallback
from herald.contracts import CHANNEL_BY_PROVIDER, HEARTBEAT_ATTRIBUTE
from herald.dead_letters import DeadLetter
from herald.events import Reason, Status, dead_letter_event, recipient_hash
from herald.settings import Settings
from herald.users import REGISTRY_ATTRIBUTE, RegistryChanges
from pipelines import launch
from pipelines.bigquery_sink import WriteRecords
from pipelines.directory import Directory
from pipelines.options import HeraldOptions, subscription_path, write_batching
from pipelines.resources import ProcessResource
from pipelines.status_sink import RecordStatus

OPT_STATUSES = frozenset({Status.OPTED_OUT, Status.OPTED_IN})
"""Callbacks about the recipient's consent rather than a delivery: recorded on users in Firestore."""
DEAD_LETTERS = "dead_letters"
EVENTS = "events"


class _ParseCallback(beam.DoFn):
    def __init__(self, source_topic: str) -> None:
        self._source_topic = source_topic
        self.parsed = Metrics.counter("herald", "callbacks_parsed")
        self.invalid = Metrics.counter("herald", "callbacks_invalid")

    def process(self, message: PubsubMessage) -> Iterator[DeliveryCallback | TaggedOutput]:
        attributes = dict(message.attributes or {})
        if HEARTBEAT_ATTRIBUTE in attributes:
            return
        try:
            if REGISTRY_ATTRIBUTE in attributes:  # the registry API's record of its changes
                changes = [TaggedOutput(EVENTS, event)
                           for event in RegistryChanges.from_pubsub(message.data).to_events()]
                yield from changes
                return
            callback = DeliveryCallback.from_pubsub(message.data)
        except Exception as error:  # noqa: BLE001 - whatever a message holds, it is parked, never raised
            self.invalid.inc()
            yield TaggedOutput(EVENTS, dead_letter_event(message.data, Reason.INVALID_MESSAGE,
                                                         str(error)))
            yield TaggedOutput(DEAD_LETTERS, DeadLetter(
                self._source_topic, Reason.INVALID_MESSAGE, message.data, attributes,
                detail=str(error)))
            return
        self.parsed.inc()
        yield callback


class _RecordOptOut(beam.DoFn):
    """An opted_out callback: every user with the opted-out address gets the provider's opt-out
    for the channel (idempotent: a repeated callback rewrites the same opt-out); an opted_in one
    lifts the opt-out that provider reported. An event each naming the user; an address no user
    has still gets its event, without a user."""

    def __init__(self, hash_key: bytes, directory: ProcessResource[Directory]) -> None:
        self._hash_key = hash_key
        self._directory = directory
        self.recorded = Metrics.counter("herald", "provider_opt_outs_recorded")

    def process(self, callback: DeliveryCallback) -> Iterator[dict]:
        if callback.address is None:  # a malformed message: recorded, nobody to opt out
            yield callback.to_event()
            return
        channel = CHANNEL_BY_PROVIDER[callback.provider]
        directory = self._directory.get()
        users = directory.users_with_address(channel, callback.address)
        for user_id in users:
            if callback.status is Status.OPTED_IN:
                directory.lift_opt_out(user_id, channel, callback.provider, callback.occurred_at)
            else:
                directory.record_opt_out(user_id, channel, callback.provider,
                                         callback.reason or callback.status.value,
                                         callback.occurred_at)
            self.recorded.inc()
        hashed = recipient_hash(callback.address, self._hash_key)
        for user_id in users or [None]:
            yield callback.to_event(user_id=user_id, recipient_hash=hashed)


class RecordCallbacks(beam.PTransform):
    """Callback messages -> (`events`) event rows, invalid ones as `dead_letter` events, and
    (`dead_letters`) the invalid ones as DeadLetters replayable to `source_topic`; opt-outs are
    recorded on their users in Firestore through `directory`."""

    def __init__(self, source_topic: str, hash_key: bytes,
                 directory: ProcessResource[Directory]) -> None:
        super().__init__()
        self._source_topic = source_topic
        self._hash_key = hash_key
        self._directory = directory

    def expand(self, messages):
        parsed = messages | "ParseCallbacks" >> beam.ParDo(
            _ParseCallback(self._source_topic)).with_outputs(DEAD_LETTERS, EVENTS,
                                                              main="callbacks")
        opt_outs, others = parsed.callbacks | "SplitOptOuts" >> beam.Partition(
            lambda callback, _: 0 if callback.status in OPT_STATUSES else 1, 2)
        recorded = opt_outs | "RecordOptOuts" >> beam.ParDo(
            _RecordOptOut(self._hash_key, self._directory))
        events = (parsed[EVENTS], others | "ToEvents" >> beam.Map(DeliveryCallback.to_event),
                  recorded) | "Events" >> beam.Flatten()
        return {EVENTS: events, DEAD_LETTERS: parsed[DEAD_LETTERS]}


def build(pipeline: beam.Pipeline, settings: Settings, options: HeraldOptions) -> None:
    recorded = (pipeline
                | "ReadCallbacks" >> beam.io.ReadFromPubSub(
                    subscription=subscription_path(settings, settings.callbacks_subscription),
                    with_attributes=True)
                | "RecordCallbacks" >> RecordCallbacks(
                    settings.callbacks_topic, settings.hash_key,
                    ProcessResource(partial(Directory, settings))))
    ((recorded[EVENTS], recorded[DEAD_LETTERS])
     | "Write" >> WriteRecords(settings, options.batch_shards, write_batching(options)))
    recorded[EVENTS] | "RecordStatus" >> RecordStatus(settings, options.batch_shards,
                                                      write_batching(options))


if __name__ == "__main__":
    launch.main(build)
