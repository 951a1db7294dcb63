"""insert_all (pipelines/bigquery_sink.py): every row BigQuery accepts is written, every row it
refuses comes back with its error, nothing is dropped (issue 9, item 4).

Two BigQuerys: the local emulator (bqemulator), which refuses a bad row by failing the whole
request (HTTP 500, or a dropped connection), and BigQuery's own documented insertAll answer, per
row (`insertErrors`: the bad row `invalid`, the others of its request `stopped`), which the emulator
cannot give; that one is served by a plain HTTP stub from the documented response shape
(https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll#response-body and
https://cloud.google.com/bigquery/docs/error-messages).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from herald.clients import bigquery_client
from herald.events import Status
from pipelines.bigquery_sink import WriteBatching, WriteEvents, insert_all

GOOD = 20


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_ts": "2026-11-30T10:00:00Z", "status": Status.SENT.value,
            **changes}


def test_one_bad_row_in_a_batch_is_parked_and_every_good_row_written(warehouse) -> None:
    settings = warehouse.load("sink_one_bad_row", [])
    bad = event("bad", attempts="three")  # an INTEGER column given text
    rows = [event(f"good-{n}") for n in range(GOOD // 2)] + [bad] + \
        [event(f"good-{n}") for n in range(GOOD // 2, GOOD)]
    client = bigquery_client(settings)
    rejected = insert_all(client, settings.events_table, rows, "event_id", sleep=lambda _: None)
    assert [row for row, _ in rejected] == [bad]
    assert rejected[0][1]  # BigQuery's error travels with the row
    written = {row["event_id"] for row in client.query(
        f"SELECT event_id FROM `{settings.events_table}`").result()}
    assert written == {f"good-{n}" for n in range(GOOD)}


@pytest.mark.parametrize("concurrency", [0, 2], ids=["on the runner's thread", "on a pool"])
def test_write_events_writes_every_good_row_and_returns_the_refused_one(
        warehouse, streamed, concurrency: int) -> None:
    """WriteEvents, its inserts on the runner's thread (Dataflow) or beside it (the DirectRunner's
    default, WriteBatching.concurrency): the same rows written, the same row refused."""
    settings = warehouse.load(f"sink_write_events_{concurrency}", [])
    bad = event("bad", attempts="three")
    rows = [event(f"good-{n}") for n in range(GOOD)] + [bad]

    def build(stream: beam.PCollection) -> None:
        refused = stream | WriteEvents(settings, shards=2, batching=WriteBatching(
            rows=6, buffer_s=0.1, concurrency=concurrency))
        assert_that(refused | beam.Map(lambda dead_letter: (dead_letter.reason,
                                                            json.loads(dead_letter.data)["event_id"])),
                    equal_to([("row_rejected", "bad")]))
    streamed(rows, build)
    written = {row["event_id"] for row in bigquery_client(settings).query(
        f"SELECT event_id FROM `{settings.events_table}`").result()}
    assert written == {f"good-{n}" for n in range(GOOD)}


class _DocumentedInsertAll(BaseHTTPRequestHandler):
    """insertAll as BigQuery documents it: a row with an unknown field is `invalid`, and every
    other row of the same request is `stopped` (not inserted); a request without it succeeds."""

    requests: list[list[str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = [row["insertId"] for row in body["rows"]]
        type(self).requests.append(ids)
        errors = [{"index": index, "errors": [
            {"reason": "invalid", "location": "nope", "message": "no such field: nope."}
            if "nope" in row["json"] else {"reason": "stopped", "message": ""}]}
            for index, row in enumerate(body["rows"])]
        if not any("nope" in row["json"] for row in body["rows"]):
            errors = []
        payload = json.dumps({"kind": "bigquery#tableDataInsertAllResponse",
                              **({"insertErrors": errors} if errors else {})}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def documented_bigquery() -> Iterator[bigquery.Client]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DocumentedInsertAll)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _DocumentedInsertAll.requests = []
    try:
        yield bigquery.Client(project="p", credentials=AnonymousCredentials(),
                              client_options=ClientOptions(
                                  api_endpoint=f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()


def test_per_row_errors_park_the_invalid_row_and_resend_the_stopped_ones(
        documented_bigquery: bigquery.Client) -> None:
    rows = [event("a"), event("b", nope=1), event("c")]
    rejected = insert_all(documented_bigquery, "p.d.events", rows, "event_id",
                          sleep=lambda _: None)
    assert [(row["event_id"], json.loads(error)[0]["reason"]) for row, error in rejected] == \
        [("b", "invalid")]
    assert _DocumentedInsertAll.requests == [["a", "b", "c"], ["a", "c"]]
