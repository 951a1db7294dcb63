"""WriteEvents and WriteDeadLetters: batched streaming inserts with the official BigQuery client.

Beam's WriteToBigQuery hard-codes Google's endpoint, so Herald writes with google-cloud-bigquery,
whose endpoint is a setting: the same code writes to the local emulator and to production. The
event id is the insertId, so a retried batch is not double-counted by BigQuery's best-effort dedupe
(and dbt's staging drops any repeat that gets through). Dead letters go to their own table and to
the dead-letter topic (herald.dead_letters).
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from google.cloud import pubsub_v1

from herald.clients import bigquery_client
from herald.dead_letters import DEAD_LETTERS_TABLE, DeadLetter
from herald.events import EVENTS_TABLE
from herald.settings import Settings
from pipelines.resources import ProcessResource

MAX_ATTEMPTS = 8
log = logging.getLogger("herald.pipeline.bigquery")


@dataclass(frozen=True)
class WriteBatching:
    """How many rows one insert carries at most, and how long a row waits for its batch to fill."""

    rows: int = 500
    """BigQuery's recommended most rows per streaming insert."""
    buffer_s: float = 0.5

    def batch(self) -> beam.GroupIntoBatches:
        return beam.GroupIntoBatches(self.rows, max_buffering_duration_secs=self.buffer_s)


class _InsertRows(beam.DoFn):
    """Inserts a batch of rows with their `id_field` as insertId, retrying transport errors."""

    def __init__(self, settings: Settings, table: str, id_field: str) -> None:
        self._table = settings.table(table)
        self._id_field = id_field
        self._client = ProcessResource(partial(bigquery_client, settings))
        self.written = Metrics.counter("herald", f"{table}_written")
        self.rejected = Metrics.counter("herald", f"{table}_rejected")

    def process(self, keyed_batch: tuple[int, Iterable[dict[str, Any]]]) -> None:
        rows = list(keyed_batch[1])
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                errors = self._client.get().insert_rows_json(
                    self._table, rows, row_ids=[row[self._id_field] for row in rows])
                break
            except Exception as error:  # noqa: BLE001 - transport errors are retried, then raised
                if attempt == MAX_ATTEMPTS:
                    raise
                delay = min(30.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0)
                log.warning("insert of %d rows into %s failed (%s); retrying in %.1fs",
                            len(rows), self._table, error, delay)
                time.sleep(delay)
        rejected = {error["index"] for error in errors}
        for index in sorted(rejected):
            log.error("BigQuery rejected %s %s: %s", self._table, rows[index][self._id_field], errors)
        self.rejected.inc(len(rejected))
        self.written.inc(len(rows) - len(rejected))


class WriteEvents(beam.PTransform):
    """Events (dicts in the herald.events schema) -> the BigQuery events table."""

    def __init__(self, settings: Settings, shards: int, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._shards = shards
        self._batching = batching

    def expand(self, events):
        return (events
                | "ShardForWrite" >> beam.Map(lambda row: (random.randrange(self._shards), row))
                | "BatchWrites" >> self._batching.batch()
                | "InsertRows" >> beam.ParDo(_InsertRows(self._settings, EVENTS_TABLE, "event_id")))


PUBLISH_TIMEOUT_S = 60.0


class _PublishDeadLetters(beam.DoFn):
    """Each DeadLetter to the dead-letter topic, every publish confirmed before its bundle commits.

    Not Beam's WriteToPubSub: that builds a PublisherClient in `setup`, which the DirectRunner
    calls for every bundle, empty ones included (8% of the local pipeline's busy thread in a
    py-spy profile); here one client serves the whole process, on any runner.
    """

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topic_path(settings.dead_letter_topic)
        self._publisher = ProcessResource(pubsub_v1.PublisherClient)
        self._pending: list[Future] = []

    def start_bundle(self) -> None:
        self._pending = []

    def process(self, dead_letter: DeadLetter) -> None:
        data, attributes = dead_letter.to_pubsub()
        self._pending.append(self._publisher.get().publish(self._topic, data, **attributes))

    def finish_bundle(self) -> None:
        for future in self._pending:
            future.result(timeout=PUBLISH_TIMEOUT_S)  # raises: the runner retries the bundle


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> the `dead_letters` table and the dead-letter topic (its `-hold`
    subscription keeps them for `herald dlq replay`)."""

    def __init__(self, settings: Settings, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._batching = batching

    def expand(self, dead_letters):
        settings = self._settings
        (dead_letters
         | "ToRows" >> beam.Map(lambda dead_letter: (0, dead_letter.to_row()))
         | "BatchRows" >> self._batching.batch()
         | "InsertRows" >> beam.ParDo(_InsertRows(settings, DEAD_LETTERS_TABLE, "dead_letter_id")))
        return dead_letters | "Publish" >> beam.ParDo(_PublishDeadLetters(settings))
