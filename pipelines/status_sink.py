"""RecordStatus: the pipelines' events into the status store (herald/status.py) that `GET
/v1/notifications/{notificationId}` reads.

A step after the events, batched like the BigQuery writes (GroupIntoBatches of up to
`WriteBatching.rows` events or `buffer_s`), each batch one BatchWrite per 500 documents with one
merged write per document: never a Firestore call per event. The delivery pipeline's events give
each delivery's terminal stage, the callbacks pipeline's the stages reported later.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from functools import partial
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from google.api_core.exceptions import GoogleAPIError

from herald.clients import state_client
from herald.events import CALLBACK, Status
from herald.settings import Settings
from herald.status import HERALD_STAGES, StatusStore
from pipelines.bigquery_sink import WriteBatching
from pipelines.resources import ProcessResource

log = logging.getLogger("herald.pipeline.status")
RECORDED = frozenset(HERALD_STAGES | CALLBACK) - {Status.OPTED_OUT}
"""Stages the status API shows; an opt-out concerns the recipient, not the delivery."""


def _store(settings: Settings) -> StatusStore:
    return StatusStore(state_client(settings), timedelta(seconds=settings.status_ttl_s))


def _about_a_delivery(event: dict[str, Any]) -> bool:
    return event.get("status") in RECORDED and bool(event.get("span_id"))


class _WriteStatus(beam.DoFn):
    """Never fails the pipeline: the status store is a lookup aid, the events in BigQuery are the
    record, so a write Firestore refuses, or a Firestore that stays down past the client's
    retries, is logged and counted (status_writes_dropped) and the deliveries go on."""

    def __init__(self, store: ProcessResource[StatusStore]) -> None:
        self._store = store
        self.documents = Metrics.counter("herald", "status_documents_written")
        self.dropped = Metrics.counter("herald", "status_writes_dropped")

    def process(self, keyed_batch: tuple[int, Iterable[dict[str, Any]]]) -> None:
        batch = list(keyed_batch[1])
        try:
            written, refused = self._store.get().record(batch)
        except GoogleAPIError as error:
            log.error("status store unavailable, %d events not recorded: %s", len(batch), error)
            self.dropped.inc(len(batch))
            return
        self.documents.inc(written)
        if refused:
            log.error("Firestore refused %d status writes, e.g. %s", len(refused), refused[0])
            self.dropped.inc(len(refused))


class RecordStatus(beam.PTransform):
    """Event rows (herald.events) -> the status store; outputs nothing."""

    def __init__(self, settings: Settings, shards: int, batching: WriteBatching) -> None:
        super().__init__()
        self._settings = settings
        self._shards = shards
        self._batching = batching

    def expand(self, events):
        return (events
                | "AboutDeliveries" >> beam.Filter(_about_a_delivery)
                | "ShardForStatus" >> beam.Map(lambda row: (random.randrange(self._shards), row))
                | "BatchStatus" >> self._batching.batch()
                | "WriteStatus" >> self._batching.write(_WriteStatus(ProcessResource(
                    partial(_store, self._settings))), "event_id"))
