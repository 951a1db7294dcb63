"""WriteEvents and WriteDeadLetters: batched streaming inserts with the official BigQuery client.

Beam's WriteToBigQuery hard-codes Google's endpoint, so Herald writes with google-cloud-bigquery,
whose endpoint is a setting: the same code writes to the local emulator and to production. The
event id is the insertId, so a retried batch is not double-counted by BigQuery's best-effort dedupe
(and dbt's staging drops any repeat that gets through). Dead letters go to their own table and to
the dead-letter topic (herald.dead_letters).
"""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.async_dofn import AsyncWrapper
import requests
from google.api_core import exceptions
from google.cloud import bigquery, pubsub_v1

from herald.clients import bigquery_client
from herald.dead_letters import DEAD_LETTERS_TABLE, DeadLetter
from herald.events import EVENTS_TABLE, Reason
from herald.settings import Settings
from pipelines.resources import ProcessResource

MAX_ATTEMPTS = 8
log = logging.getLogger("herald.pipeline.bigquery")


@dataclass(frozen=True)
class WriteBatching:
    """How many rows one insert carries at most, how long a row waits for its batch to fill, and
    how many inserts a write step keeps in flight beside the runner's thread."""

    rows: int = 500
    """BigQuery's recommended most rows per streaming insert."""
    buffer_s: float = 0.5
    concurrency: int = 0
    """0: each insert runs on the runner's thread, as Dataflow's many threads per worker afford.
    n: up to n inserts at once on a pool of their own (Beam's AsyncWrapper), the runner's thread
    going on meanwhile. For the DirectRunner, which runs every bundle of every step on one thread:
    a full `herald bench --profile` found it waiting on the local BigQuery emulator's inserts 55%
    of the time, sends included. Beam's metrics are not counted on the pool's threads. An insert
    that raises (BigQuery unavailable past MAX_ATTEMPTS) is not fatal there: AsyncWrapper
    schedules it again from its state, so the rows wait, and the batches collected with it may be
    inserted twice (their insertIds let BigQuery drop the repeats; dbt's staging drops any left)."""

    def batch(self) -> beam.GroupIntoBatches:
        return beam.GroupIntoBatches(self.rows, max_buffering_duration_secs=self.buffer_s)

    def write(self, dofn: beam.DoFn, id_field: str) -> beam.ParDo:
        """The step running `dofn` on keyed batches of rows, on the runner's thread or on a pool
        (`concurrency`); `id_field` identifies a batch to AsyncWrapper, which tracks in-flight
        elements by a hashable id."""
        if not self.concurrency:
            return beam.ParDo(dofn)
        return beam.ParDo(AsyncWrapper(dofn, parallelism=self.concurrency,
                                       callback_frequency=WRITE_POLL_S, id_fn=_RowIds(id_field)))


WRITE_POLL_S = 0.25
"""How often a write step on a pool collects its finished inserts (see WriteBatching.concurrency)."""


class _RowIds:
    """A batch's id for AsyncWrapper: its rows' ids."""

    def __init__(self, id_field: str) -> None:
        self._id_field = id_field

    def __call__(self, rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
        return tuple(row[self._id_field] for row in rows)

RETRY_ROW_REASONS = frozenset({"stopped", "backendError", "internalError", "timeout",
                               "rateLimitExceeded"})
"""Per-row insertAll errors that say nothing about the row itself: `stopped` (a valid row BigQuery
did not insert because another row of its request was invalid) and the transient reasons of
https://cloud.google.com/bigquery/docs/error-messages. Any other reason (`invalid`, ...) rejects
the row."""
RETRY_REQUEST_ERRORS = (exceptions.ServiceUnavailable, exceptions.TooManyRequests,
                        exceptions.BadGateway, exceptions.GatewayTimeout, exceptions.Forbidden)
"""Whole-request answers of an unavailable or rate-limiting BigQuery (403 is its quota answer):
retried, then raised for the runner to retry the bundle. Other request errors (400, 500, a
dropped connection: how the local emulator answers a row it cannot store) split the request."""

SINGLE_ROW_ATTEMPTS = 3
"""Tries of one row alone (after its request was split down to it) before it is refused: a
transient 500 gets two more chances, quickly, and a bad row does not hold the writer for long."""

Rejected = tuple[dict[str, Any], str]
"""A row BigQuery refused, and its error."""


def _backoff(attempt: int) -> float:
    return min(30.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0)


def insert_all(client: bigquery.Client, table: str, rows: list[dict[str, Any]], id_field: str,
               sleep: Callable[[float], None] = time.sleep) -> list[Rejected]:
    """Insert `rows` (`id_field` as insertId) so that every row BigQuery accepts is written and
    every row it refuses comes back with its error; nothing is dropped.

    - Per-row errors (insertAll's `insertErrors`): refused rows are returned; rows stopped by them
      or failed transiently are inserted again.
    - A whole request refused (400, 500, a dropped connection) is split in halves, down to the
      one row it is about, which is tried SINGLE_ROW_ATTEMPTS times.
    - An unavailable or rate-limiting BigQuery (RETRY_REQUEST_ERRORS) is retried, then raised.

    Raises the last error when a row still fails transiently after MAX_ATTEMPTS."""
    rejected: list[Rejected] = []
    groups = [rows]
    while groups:
        group, attempt = groups.pop(), 0
        while group:
            attempt += 1
            try:
                errors = client.insert_rows_json(table, group, row_ids=[r[id_field] for r in group],
                                                  retry=None, timeout=60)
            except RETRY_REQUEST_ERRORS:
                if attempt >= MAX_ATTEMPTS:
                    raise
                sleep(_backoff(attempt))
                continue
            except (exceptions.GoogleAPICallError, requests.RequestException) as error:
                if len(group) > 1:  # halves at once: a batch with k bad rows costs ~k log n calls
                    groups += [group[:len(group) // 2], group[len(group) // 2:]]
                    group = []
                elif attempt < SINGLE_ROW_ATTEMPTS:
                    sleep(_backoff(attempt) / 10)
                else:
                    rejected.append((group[0], f"{type(error).__name__}: {error}"))
                    group = []
                continue
            by_index = {error["index"]: error["errors"] for error in errors}
            again = []
            for index, row in enumerate(group):
                row_errors = by_index.get(index)
                if not row_errors:
                    continue
                if {error.get("reason") for error in row_errors} <= RETRY_ROW_REASONS:
                    again.append(row)
                else:
                    rejected.append((row, json.dumps(row_errors)))
            if again and attempt >= MAX_ATTEMPTS:
                raise RuntimeError(f"{len(again)} rows of {table} still failing: {errors}")
            if any(e.get("reason") != "stopped" for errs in by_index.values() for e in errs
                   if e.get("reason") in RETRY_ROW_REASONS):
                sleep(_backoff(attempt))
            group = again
    return rejected


class _InsertRows(beam.DoFn):
    """Inserts a batch of rows (`insert_all`); outputs a DeadLetter for each row BigQuery refused,
    with its error (`row_rejected`), so a refused event is parked whole instead of lost."""

    def __init__(self, settings: Settings, table: str, id_field: str) -> None:
        self._table = settings.table(table)
        self._id_field = id_field
        self._client = ProcessResource(partial(bigquery_client, settings))
        self.written = Metrics.counter("herald", f"{table}_written")
        self.rejected = Metrics.counter("herald", f"{table}_rejected")

    def process(self, keyed_batch: tuple[int, Iterable[dict[str, Any]]]) -> Iterator[DeadLetter]:
        rows = list(keyed_batch[1])
        rejected = insert_all(self._client.get(), self._table, rows, self._id_field)
        self.written.inc(len(rows) - len(rejected))
        self.rejected.inc(len(rejected))
        for row, error in rejected:
            log.error("BigQuery refused %s row %s: %s", self._table, row.get(self._id_field), error)
            yield DeadLetter(self._table, Reason.ROW_REJECTED.value,
                             json.dumps(row, sort_keys=True, default=str).encode(), {},
                             detail=error)


class WriteEvents(beam.PTransform):
    """Events (dicts in the herald.events schema) -> the BigQuery events table; returns the
    DeadLetters of rows BigQuery refused, for WriteDeadLetters."""

    def __init__(self, settings: Settings, shards: int, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._shards = shards
        self._batching = batching

    def expand(self, events):
        return (events
                | "ShardForWrite" >> beam.Map(lambda row: (random.randrange(self._shards), row))
                | "BatchWrites" >> self._batching.batch()
                | "InsertRows" >> self._batching.write(
                    _InsertRows(self._settings, EVENTS_TABLE, "event_id"), "event_id"))


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
    subscription keeps them for `herald dlq replay`). A dead letter whose row the table refuses
    is logged and counted (`dead_letters_rejected`); its topic message still keeps it."""

    def __init__(self, settings: Settings, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._batching = batching

    def expand(self, dead_letters):
        settings = self._settings
        (dead_letters
         | "ToRows" >> beam.Map(lambda dead_letter: (0, dead_letter.to_row()))
         | "BatchRows" >> self._batching.batch()
         | "InsertRows" >> self._batching.write(
             _InsertRows(settings, DEAD_LETTERS_TABLE, "dead_letter_id"), "dead_letter_id"))
        return dead_letters | "Publish" >> beam.ParDo(_PublishDeadLetters(settings))


class WriteRecords(beam.PTransform):
    """A pipeline's two outputs to BigQuery and the dead-letter topic: events through WriteEvents,
    dead letters, and the event rows BigQuery refused, through WriteDeadLetters."""

    def __init__(self, settings: Settings, shards: int, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._shards = shards
        self._batching = batching

    def expand(self, outputs: tuple[beam.PCollection, beam.PCollection]):
        events, dead_letters = outputs
        refused = events | "WriteEvents" >> WriteEvents(self._settings, self._shards,
                                                        self._batching)
        return ((dead_letters, refused) | "WithRefusedRows" >> beam.Flatten()
                | "WriteDeadLetters" >> WriteDeadLetters(self._settings, self._batching))
