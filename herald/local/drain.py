"""Wait until the streaming pipeline has handled a set of accepted requests, judged from BigQuery.

A streaming job never "finishes", so drained means: every trace has its `accepted` event and a
terminal event for each of the deliveries its `resolved` event counts (as `herald reconcile`
judges it), and no new event has arrived for a quiet period (batches flush within half a second,
so a few seconds of quiet means nothing is in flight).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from google.cloud import bigquery

from herald.reconcile import finished
from herald.settings import Settings


@dataclass(frozen=True)
class Progress:
    accepted: int
    settled: int
    events: int


def progress(client: bigquery.Client, settings: Settings, trace_ids: list[str]) -> Progress:
    query = f"""
        SELECT COUNT(DISTINCT IF(status = 'accepted', trace_id, NULL)) AS accepted, COUNT(*) AS events
        FROM `{settings.events_table}`
        WHERE trace_id IN UNNEST(@trace_ids)
    """
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("trace_ids", "STRING", trace_ids)])
    row = next(iter(client.query(query, job_config=config).result()))
    return Progress(row["accepted"], len(finished(client, settings, trace_ids)), row["events"])


def wait_for_drain(client: bigquery.Client, settings: Settings, trace_ids: Iterable[str], *,
                   timeout_s: float = 300.0, quiet_s: float = 4.0, poll_s: float = 1.0,
                   on_progress: Callable[[Progress], None] | None = None,
                   settled: bool = True) -> Progress:
    """Block until drained; raises TimeoutError with the last progress otherwise.

    With `settled=False`, quiet is enough: the pipeline has stopped producing events for these
    traces, settled or not (what `herald reconcile` must run after, so that it resends what was
    lost and not what is merely queued)."""
    traces = sorted(set(trace_ids))
    deadline = time.monotonic() + timeout_s
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        current = progress(client, settings, traces)
        if on_progress:
            on_progress(current)
        if current != last:
            last, quiet_since = current, time.monotonic()
        elif ((not settled or current.accepted == current.settled == len(traces))
              and time.monotonic() - quiet_since >= quiet_s):
            return current
        time.sleep(poll_s)
    raise TimeoutError(f"pipeline did not drain in {timeout_s}s: {last} of {len(traces)} traces")
