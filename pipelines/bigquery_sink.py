"""WriteEvents: batched streaming inserts with the official BigQuery client.

Beam's WriteToBigQuery hard-codes Google's endpoint, so Herald writes with google-cloud-bigquery,
whose endpoint is a setting: the same code writes to the local emulator and to production. The
event id is the insertId, so a retried batch is not double-counted by BigQuery's best-effort dedupe
(and dbt's staging drops any repeat that gets through).
"""

from __future__ import annotations

import logging
import random
import time
from functools import partial
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from herald.clients import bigquery_client
from herald.settings import Settings
from pipelines.resources import ProcessResource

WRITE_BATCH = 500
WRITE_BUFFER_S = 0.5
MAX_ATTEMPTS = 8
log = logging.getLogger("herald.pipeline.bigquery")


class _InsertRows(beam.DoFn):
    def __init__(self, settings: Settings) -> None:
        self._table = settings.events_table
        self._client = ProcessResource(partial(bigquery_client, settings))
        self.written = Metrics.counter("herald", "events_written")
        self.rejected = Metrics.counter("herald", "events_rejected")

    def process(self, keyed_batch: tuple[int, Iterable[dict[str, Any]]]) -> None:
        rows = list(keyed_batch[1])
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                errors = self._client.get().insert_rows_json(
                    self._table, rows, row_ids=[row["event_id"] for row in rows])
                break
            except Exception as error:  # noqa: BLE001 - transport errors are retried, then raised
                if attempt == MAX_ATTEMPTS:
                    raise
                delay = min(30.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0)
                log.warning("insert of %d events failed (%s); retrying in %.1fs", len(rows), error, delay)
                time.sleep(delay)
        rejected = {error["index"] for error in errors}
        for index in sorted(rejected):
            log.error("BigQuery rejected event %s: %s", rows[index]["event_id"], errors)
        self.rejected.inc(len(rejected))
        self.written.inc(len(rows) - len(rejected))


class WriteEvents(beam.PTransform):
    """Events (dicts in the herald.events schema) -> the BigQuery events table."""

    def __init__(self, settings: Settings, shards: int) -> None:
        super().__init__()
        self._settings = settings
        self._shards = shards

    def expand(self, events):
        return (events
                | "ShardForWrite" >> beam.Map(lambda row: (random.randrange(self._shards), row))
                | "BatchWrites" >> beam.GroupIntoBatches(
                    WRITE_BATCH, max_buffering_duration_secs=WRITE_BUFFER_S)
                | "InsertRows" >> beam.ParDo(_InsertRows(self._settings)))
