"""Counting the Google Cloud operations a process makes, for the bench's cost figures.

`install()` wraps every gRPC channel the process opens (Firestore and Pub/Sub clients open theirs
with `grpc.insecure_channel` on the emulators, `grpc.secure_channel` in production) in a counting
interceptor, and `bigquery.Client.insert_rows_json` (BigQuery's streaming inserts are REST) in a
counting wrapper; the counts are written every half second to `<dir>/<pid>.json`, one file per
process (gunicorn's workers are forked after install: each counts afresh and writes its own).

The bench starts the processes it measures with `bench/opcount` first on PYTHONPATH and
`HERALD_BENCH_OPCOUNT=<dir>` set: that directory's `sitecustomize.py` calls `install()` before
anything else runs. `totals(dir, pids)` sums the files of a set of processes; a window's
operations are the difference of two totals.

What is counted is what the billing pages count (prices and their sources: herald/bench/cost.py):
- Firestore (https://cloud.google.com/firestore/pricing): a document read per document a
  `BatchGetDocuments` asks for (found or not), per document a `RunQuery` or `ListDocuments`
  returns and at least one per query; a write per `update`/`transform` write of a `Commit`
  (or `BatchWrite`), a delete per `delete` write.
- Pub/Sub (https://cloud.google.com/pubsub/pricing): messages published and their bytes (data,
  attribute keys and values, 20 bytes of timestamp), and per `Publish` request at least 1,000
  bytes; messages acknowledged (a pull that is acknowledged was delivered once).
- BigQuery (https://cloud.google.com/bigquery/pricing#data_ingestion_pricing): rows streamed with
  `insertAll` and their JSON bytes, at least 1 KB per row.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

ENV = "HERALD_BENCH_OPCOUNT"
"""The directory the counts are written to; unset, `install` does nothing."""
HOOK_DIR = Path(__file__).resolve().parents[2] / "bench" / "opcount"
"""Holds the sitecustomize.py that installs the counting: put it first on a process's PYTHONPATH."""
PUBSUB_MIN_REQUEST_BYTES = 1000
"""Pub/Sub bills at least 1,000 bytes per publish, push or pull request
(https://cloud.google.com/pubsub/pricing#throughput_costs)."""
PUBSUB_TIMESTAMP_BYTES = 20
BIGQUERY_MIN_ROW_BYTES = 1024
"""Streaming inserts bill at least 1 KB per row (https://cloud.google.com/bigquery/pricing)."""

FIRESTORE_READS = "firestore_reads"
FIRESTORE_WRITES = "firestore_writes"
FIRESTORE_DELETES = "firestore_deletes"
PUBSUB_PUBLISHED = "pubsub_messages_published"
PUBSUB_PUBLISH_BYTES = "pubsub_publish_bytes"
PUBSUB_PUBLISH_BILLED = "pubsub_publish_billed_bytes"
PUBSUB_ACKED = "pubsub_messages_acked"
BIGQUERY_ROWS = "bigquery_rows"
BIGQUERY_BYTES = "bigquery_bytes"
BIGQUERY_BILLED = "bigquery_billed_bytes"
KEYS = (FIRESTORE_READS, FIRESTORE_WRITES, FIRESTORE_DELETES, PUBSUB_PUBLISHED,
        PUBSUB_PUBLISH_BYTES, PUBSUB_PUBLISH_BILLED, PUBSUB_ACKED, BIGQUERY_ROWS,
        BIGQUERY_BYTES, BIGQUERY_BILLED)

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _add(**amounts: int) -> None:
    with _lock:
        _counts.update({key: value for key, value in amounts.items() if value})


def _pb(message: Any) -> Any:
    """The raw protobuf of a proto-plus message (the gapic layer's), or the message itself."""
    pb = getattr(type(message), "pb", None)
    return pb(message) if callable(pb) else message


def _method_name(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else method


def message_bytes(data: bytes, attributes: Mapping[str, str]) -> int:
    """A Pub/Sub message's billed size before the per-request minimum: data, attribute keys and
    values, and the timestamp (the message id is assigned by the service and left out)."""
    return len(data) + sum(len(k) + len(v) for k, v in attributes.items()) + PUBSUB_TIMESTAMP_BYTES


def count_request(method: str, request: Any) -> None:
    """Count what a unary request bills by itself (writes, requested reads, publishes, acks)."""
    name = method.rsplit("/", 1)[-1]
    if "Firestore" in method:
        if name in ("Commit", "BatchWrite"):
            kinds = Counter(_pb(request).writes[i].WhichOneof("operation")
                            for i in range(len(_pb(request).writes)))
            _add(**{FIRESTORE_DELETES: kinds.get("delete", 0),
                    FIRESTORE_WRITES: kinds.get("update", 0) + kinds.get("transform", 0)})
        elif name == "BatchGetDocuments":
            _add(**{FIRESTORE_READS: len(_pb(request).documents)})
    elif "Publisher" in method and name == "Publish":
        sizes = [message_bytes(m.data, dict(m.attributes)) for m in _pb(request).messages]
        _add(**{PUBSUB_PUBLISHED: len(sizes), PUBSUB_PUBLISH_BYTES: sum(sizes),
                PUBSUB_PUBLISH_BILLED: max(PUBSUB_MIN_REQUEST_BYTES, sum(sizes))})
    elif "Subscriber" in method and name == "Acknowledge":
        _add(**{PUBSUB_ACKED: len(_pb(request).ack_ids)})


def count_documents(method: str, responses: int) -> None:
    """A query or listing bills the documents it returned, at least one read."""
    _add(**{FIRESTORE_READS: max(1, responses)})


class _CountingStream:
    """A server-streaming call that counts the documents it yields and bills them once it ends;
    everything else (cancel, code, callbacks) goes to the call it wraps."""

    def __init__(self, call: Any, method: str) -> None:
        self._call, self._method, self._documents, self._done = call, method, 0, False

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        try:
            response = next(self._call)
        except StopIteration:
            self._finish()
            raise
        if _pb(response).HasField("document"):
            self._documents += 1
        return response

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            count_documents(self._method, self._documents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def _interceptor() -> Any:
    import grpc

    class Counting(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
            method = _method_name(details)
            count_request(method, request)
            outcome = continuation(details, request)
            if method.endswith("Firestore/ListDocuments"):
                def listed(call: Any) -> None:
                    try:
                        count_documents(method, len(_pb(call.result()).documents))
                    except Exception:  # noqa: BLE001 - a failed call bills nothing
                        pass
                outcome.add_done_callback(listed)
            return outcome

        def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
            method = _method_name(details)
            count_request(method, request)
            call = continuation(details, request)
            return _CountingStream(call, method) if method.endswith("Firestore/RunQuery") else call

        def intercept_stream_unary(self, continuation: Callable, details: Any,
                                   request_iterator: Any) -> Any:
            return continuation(details, request_iterator)

        def intercept_stream_stream(self, continuation: Callable, details: Any,
                                    request_iterator: Any) -> Any:
            return continuation(details, request_iterator)

    return Counting()


def _wrap_bigquery() -> None:
    from google.cloud import bigquery

    original = bigquery.Client.insert_rows_json

    def insert_rows_json(self: Any, table: Any, json_rows: Iterable[Any], *args: Any,
                         **kwargs: Any) -> Any:
        rows = list(json_rows)
        sizes = [len(json.dumps(row, separators=(",", ":"), default=str)) for row in rows]
        _add(**{BIGQUERY_ROWS: len(rows), BIGQUERY_BYTES: sum(sizes),
                BIGQUERY_BILLED: sum(max(BIGQUERY_MIN_ROW_BYTES, size) for size in sizes)})
        return original(self, table, rows, *args, **kwargs)

    bigquery.Client.insert_rows_json = insert_rows_json


def _dump(directory: Path) -> None:
    with _lock:
        snapshot = dict(_counts)
    path = directory / f"{os.getpid()}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(snapshot))
    temporary.replace(path)


def install() -> bool:
    """Count this process's operations if HERALD_BENCH_OPCOUNT names a directory; True if so."""
    directory = os.environ.get(ENV)
    if not directory:
        return False
    import grpc

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    interceptor = _interceptor()
    for name in ("insecure_channel", "secure_channel"):
        original = getattr(grpc, name)

        def counted(*args: Any, _original: Callable = original, **kwargs: Any) -> Any:
            return grpc.intercept_channel(_original(*args, **kwargs), interceptor)

        setattr(grpc, name, counted)
    _wrap_bigquery()

    def writer() -> None:
        stop = threading.Event()
        while not stop.wait(0.5):
            try:
                _dump(target)
            except OSError:
                pass

    def start_writer() -> None:
        threading.Thread(target=writer, name="herald-opcount", daemon=True).start()

    def in_child() -> None:
        """A forked child (a gunicorn worker) has no threads but the forking one: it counts
        afresh (its parent's counts are in the parent's file) and starts its own writer."""
        global _lock
        _lock = threading.Lock()
        _counts.clear()
        start_writer()

    start_writer()
    os.register_at_fork(after_in_child=in_child)
    atexit.register(lambda: _dump(target))
    return True


def totals(directory: Path, pids: Iterable[int]) -> dict[str, int]:
    """The summed counts of these processes (their files under `directory`; none yet is zero)."""
    total: Counter[str] = Counter()
    for pid in pids:
        path = directory / f"{pid}.json"
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return {key: total.get(key, 0) for key in KEYS}


def difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in KEYS}


def hook_environment(directory: Path, repo_root: Path) -> dict[str, str]:
    """The environment that makes a Python process under `repo_root` count into `directory`."""
    return {ENV: str(directory), "PYTHONPATH": f"{HOOK_DIR}{os.pathsep}{repo_root}"}
