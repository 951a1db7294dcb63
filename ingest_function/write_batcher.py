"""Group commit for the edge's Firestore writes: single-document writes from many request threads
go out together in Firestore's non-atomic BatchWrite calls.

Every accepted request writes its idempotency record twice (claimed, then accepted). One RPC per
write made those writes the largest cost of `POST /v1/notifications` on the local stack: the
Firestore emulator used as much CPU as the function itself, and each RPC's client-side cost is
paid by the request's thread under the GIL. Here each write still waits for its own result (a 202
still means stored), but the writes of concurrent requests share a call: while one call is in
flight the next ones queue, and the flusher sends everything queued as soon as it returns. Under
light load a write goes out at once, alone; nothing waits for a batch to fill.

BatchWrite applies each write on its own, with its own precondition and status, so a create that
finds the record already there fails alone (AlreadyExists), exactly as the single-document call.
A call may not write one document twice, so a second write to a document waits for the next call.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from google.api_core import exceptions
from google.cloud import firestore
from google.rpc import code_pb2

from herald import batch_writes


@dataclass
class _Write:
    path: str
    stage: batch_writes.Stage
    result: Future = field(default_factory=Future)


class WriteBatcher:
    """`create`, `update` and `delete` of one document each, blocking until written, raising what
    the single-document call would (AlreadyExists, FailedPrecondition, NotFound, or the call's
    GoogleAPIError); `call` holds the retry and timeout of every BatchWrite call."""

    def __init__(self, db: firestore.Client, call: Mapping[str, Any]) -> None:
        self._db = db
        self._call = dict(call)
        # A write may wait for the call in flight, then for its own.
        self._wait_s = 2 * call["timeout"] + 1 if call.get("timeout") else None
        self._queue: list[_Write] = []
        self._lock = threading.Condition()
        self._flusher: threading.Thread | None = None

    def create(self, ref: firestore.DocumentReference, data: dict[str, Any]) -> datetime:
        """The record's update time."""
        return self._write(ref, batch_writes.create(ref, data))

    def update(self, ref: firestore.DocumentReference, data: dict[str, Any],
               option: Any) -> datetime:
        return self._write(ref, batch_writes.update(ref, data, option))

    def delete(self, ref: firestore.DocumentReference, option: Any) -> None:
        self._write(ref, batch_writes.delete(ref, option))

    def _write(self, ref: firestore.DocumentReference, stage: batch_writes.Stage) -> datetime:
        write = _Write(ref._document_path, stage)
        with self._lock:
            self._queue.append(write)
            if self._flusher is None:  # started on first use: a forked server worker gets its own
                self._flusher = threading.Thread(target=self._flush_forever, daemon=True,
                                                 name="herald-firestore-writes")
                self._flusher.start()
            self._lock.notify()
        try:
            return write.result.result(timeout=self._wait_s)
        except TimeoutError as error:
            raise exceptions.DeadlineExceeded(f"write of {write.path} not answered") from error

    def _flush_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                writes = self._take()
            self._commit(writes)

    def _take(self) -> list[_Write]:
        """The queued writes that can share one call: up to batch_writes.LIMIT, one per document, in
        arrival order (a later write to a document stays queued behind the earlier one)."""
        taken: list[_Write] = []
        remaining: list[_Write] = []
        held: set[str] = set()  # documents written by this call or by a write left queued
        for write in self._queue:
            if len(taken) < batch_writes.LIMIT and write.path not in held:
                taken.append(write)
            else:
                remaining.append(write)
            held.add(write.path)
        self._queue = remaining
        return taken

    def _commit(self, writes: list[_Write]) -> None:
        try:
            answers = batch_writes.write_each(self._db, [write.stage for write in writes],
                                              **self._call)
        except Exception as error:  # noqa: BLE001 - every waiting request gets it, none hangs
            for write in writes:
                write.result.set_exception(error)
            return
        for write, (status, result) in zip(writes, answers, strict=True):
            if status.code == code_pb2.OK:
                write.result.set_result(result.update_time)
            else:
                write.result.set_exception(
                    exceptions.from_grpc_status(status.code, status.message))
