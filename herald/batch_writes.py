"""Firestore's BatchWrite, the one way Herald writes many documents in one call.

Unlike a transaction or a WriteBatch commit, a BatchWrite is not atomic: each write succeeds or
fails on its own, with its own precondition and status, so a create on a document that already
exists fails ALREADY_EXISTS without touching the others. Firestore takes at most LIMIT writes per
call and refuses a call that writes one document twice. Used for the send claims of a provider
batch (pipelines/claims.py), for the edge's group commit (ingest_function/write_batcher.py) and
for the status store (herald/status.py).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

LIMIT = 500
"""Firestore's most writes per BatchWrite call."""

Stage = Callable[[BulkWriteBatch], None]
"""Adds one write to a batch: `create`, `update` or `delete` below."""


def create(ref: firestore.DocumentReference, data: dict[str, Any]) -> Stage:
    return lambda batch: batch.create(ref, data)


def set_merge(ref: firestore.DocumentReference, data: dict[str, Any]) -> Stage:
    """Set the fields `data` names (nested maps merged field by field), creating the document if
    need be."""
    return lambda batch: batch.set(ref, data, merge=True)


def update(ref: firestore.DocumentReference, data: dict[str, Any], option: Any = None) -> Stage:
    return lambda batch: batch.update(ref, data, option=option)


def delete(ref: firestore.DocumentReference, option: Any) -> Stage:
    return lambda batch: batch.delete(ref, option=option)


def write_each(db: firestore.Client, stages: Sequence[Stage], **call: Any) -> list[tuple[Any, Any]]:
    """Each staged write, LIMIT a call (`call`: retry and timeout); its (google.rpc Status,
    WriteResult) in order. The caller keeps one write per document in `stages`."""
    answers: list[tuple[Any, Any]] = []
    for start in range(0, len(stages), LIMIT):
        batch = BulkWriteBatch(db)
        for stage in stages[start:start + LIMIT]:
            stage(batch)
        response = batch.commit(**call)
        answers.extend(zip(response.status, response.write_results, strict=True))
    return answers
