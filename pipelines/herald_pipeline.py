"""Herald's streaming delivery pipeline: Pub/Sub requests in, provider sends out, every stage to BigQuery.

    read requests -> parse (bad -> dead letter) -> read an audience send's page (next page's
    message -> requests topic) -> resolve recipients in Firestore (opted out: marked to skip)
    -> drop redeliveries (keyed state + TTL timer) -> branch by channel and priority lane ->
    durable claims, then send with the providers' SDKs (opted out -> suppressed) -> every
    stage's event -> BigQuery

Locally (`herald local up` starts it with the stack's environment):
    python -m pipelines.herald_pipeline --streaming

On Dataflow, the same module with options only:
    python -m pipelines.herald_pipeline --streaming --runner DataflowRunner \
        --project my-project --region europe-west1 --temp_location gs://my-bucket/tmp \
        --setup_file ./setup.py --herald_project my-project \
        --requests_subscription notification-requests-pipeline --dataset herald
"""

from __future__ import annotations

from functools import partial

import apache_beam as beam

from herald.settings import Settings
from pipelines import audiences, launch, recipients
from pipelines.audiences import ExpandAudiences
from pipelines.bigquery_sink import WriteRecords
from pipelines.dedupe import Bucketing, DedupeDeliveries
from pipelines.directory import Directory
from pipelines.options import HeraldOptions, dedupe_buckets, subscription_path, write_batching
from pipelines.parse import ACCEPTED, DEAD_LETTER, DEAD_LETTERS, ParseRequests
from pipelines.recipients import ResolveRecipients
from pipelines.resources import ProcessResource
from pipelines.send import BRANCH_NAMES, Router, SendDeliveries
from pipelines.status_sink import RecordStatus

EVENTS = "events"


class DeliverNotifications(beam.PTransform):
    """Raw request messages -> {"events": every event of every stage (event rows),
    "dead_letters": what was parked, as herald.dead_letters.DeadLetter}.

    Separate from I/O so tests feed it a TestStream and read its outputs directly.
    """

    def __init__(self, settings: Settings, options: HeraldOptions) -> None:
        super().__init__()
        self._settings = settings
        self._options = options

    def expand(self, messages):
        directory = ProcessResource(partial(Directory, self._settings))  # one per worker, shared
        parsed = messages | "ParseRequests" >> ParseRequests(self._settings.requests_topic)
        expanded = parsed.envelopes | "ExpandAudiences" >> ExpandAudiences(self._settings)
        resolved = expanded.envelopes | "ResolveRecipients" >> ResolveRecipients(
            self._settings, directory, Bucketing(dedupe_buckets(self._options)))
        deduped = resolved.deliveries | "DedupeDeliveries" >> DedupeDeliveries(
            self._options.dedupe_ttl_s, Router(self._options.batch_shards), BRANCH_NAMES)
        sent = ({name: deduped[name] for name in BRANCH_NAMES}
                | "SendDeliveries" >> SendDeliveries(self._settings, directory))
        events = ((parsed[DEAD_LETTER], parsed[ACCEPTED], expanded[audiences.EVENTS],
                   resolved[recipients.EVENTS], sent.events)
                  | "AllEvents" >> beam.Flatten())
        dead_letters = ((parsed[DEAD_LETTERS], resolved[recipients.DEAD_LETTERS],
                         sent[DEAD_LETTERS])
                        | "AllDeadLetters" >> beam.Flatten())
        return {EVENTS: events, DEAD_LETTERS: dead_letters}


def build(pipeline: beam.Pipeline, settings: Settings, options: HeraldOptions) -> None:
    """The whole streaming job on an existing pipeline object."""
    outputs = (pipeline
               | "ReadRequests" >> beam.io.ReadFromPubSub(
                   subscription=subscription_path(settings, settings.requests_subscription),
                   with_attributes=True)
               | "DeliverNotifications" >> DeliverNotifications(settings, options))
    ((outputs[EVENTS], outputs[DEAD_LETTERS])
     | "Write" >> WriteRecords(settings, options.batch_shards, write_batching(options)))
    outputs[EVENTS] | "RecordStatus" >> RecordStatus(settings, options.batch_shards,
                                                      write_batching(options))


if __name__ == "__main__":
    launch.main(build)
