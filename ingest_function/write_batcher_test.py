"""WriteBatcher against the Firestore emulator: concurrent writes share BatchWrite calls, and each
caller still gets exactly what its own single-document call would have given it."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from ingest_function.write_batcher import WriteBatcher


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    return firestore.Client(project=f"writes-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def commits(monkeypatch) -> list[int]:
    """The size of every BatchWrite call made (the real call still runs)."""
    sizes: list[int] = []
    commit = BulkWriteBatch.commit

    def counting(batch: BulkWriteBatch, *args, **kwargs):
        sizes.append(len(batch._write_pbs))
        return commit(batch, *args, **kwargs)

    monkeypatch.setattr(BulkWriteBatch, "commit", counting)
    return sizes


def test_concurrent_creates_share_calls_and_each_gets_its_update_time(db, commits) -> None:
    writes = WriteBatcher(db, {})
    refs = [db.collection("c").document(f"d{i}") for i in range(200)]
    start = threading.Barrier(40)

    def create(ref: firestore.DocumentReference):
        if int(ref.id[1:]) < 40:
            start.wait()
        return writes.create(ref, {"n": ref.id})

    with ThreadPoolExecutor(40) as pool:
        times = list(pool.map(create, refs))

    assert [ref.get().update_time for ref in refs] == times
    assert [ref.get().to_dict() for ref in refs] == [{"n": ref.id} for ref in refs]
    assert sum(commits) == 200 and len(commits) < 200 and max(commits) > 1


def test_a_create_on_an_existing_record_fails_alone(db) -> None:
    writes = WriteBatcher(db, {})
    taken = db.collection("c").document("taken")
    taken.create({"n": 0})
    fresh = [db.collection("c").document(f"f{i}") for i in range(20)]

    def create(ref: firestore.DocumentReference) -> str:
        try:
            writes.create(ref, {"n": 1})
            return "created"
        except exceptions.AlreadyExists:
            return "exists"

    with ThreadPoolExecutor(21) as pool:
        outcomes = list(pool.map(create, [*fresh[:10], taken, *fresh[10:]]))

    assert outcomes == ["created"] * 10 + ["exists"] + ["created"] * 10
    assert taken.get().to_dict() == {"n": 0}


def test_preconditions_hold_as_for_single_document_calls(db) -> None:
    writes = WriteBatcher(db, {})
    ref = db.collection("c").document("d")
    first = writes.create(ref, {"state": "pending"})
    second = writes.update(ref, {"state": "accepted"}, db.write_option(last_update_time=first))

    with pytest.raises(exceptions.FailedPrecondition):  # written since `first`
        writes.update(ref, {"state": "stale"}, db.write_option(last_update_time=first))
    with pytest.raises(exceptions.FailedPrecondition):
        writes.delete(ref, db.write_option(last_update_time=first))
    assert ref.get().to_dict() == {"state": "accepted"}
    writes.delete(ref, db.write_option(last_update_time=second))
    assert not ref.get().exists
    with pytest.raises(exceptions.NotFound):
        writes.update(ref, {"state": "accepted"}, None)


def test_writes_to_one_document_queued_together_go_out_in_order_in_separate_calls(
        db, monkeypatch) -> None:
    """Firestore refuses a BatchWrite that writes one document twice; the second write waits."""
    writes = WriteBatcher(db, {})
    release, sizes = threading.Event(), []
    commit = BulkWriteBatch.commit

    def held_commit(batch: BulkWriteBatch, *args, **kwargs):
        sizes.append(len(batch._write_pbs))
        release.wait(10)
        return commit(batch, *args, **kwargs)

    monkeypatch.setattr(BulkWriteBatch, "commit", held_commit)
    ref = db.collection("c").document("d")
    with ThreadPoolExecutor(4) as pool:
        pool.submit(writes.create, db.collection("c").document("first"), {})
        _wait_for(lambda: sizes == [1])  # its call is in flight, held
        queued = [pool.submit(writes.create, ref, {"step": 1}),
                  pool.submit(writes.create, db.collection("c").document("other"), {})]
        _wait_for(lambda: len(writes._queue) == 2)  # both queued behind the held call
        queued.append(pool.submit(writes.update, ref, {"step": 2}, None))
        _wait_for(lambda: len(writes._queue) == 3)
        release.set()
        [future.result(10) for future in queued]

    assert ref.get().to_dict() == {"step": 2}
    assert sizes == [1, 2, 1]


def _wait_for(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the writes were never queued"
        time.sleep(0.01)


def test_a_call_that_fails_fails_every_write_waiting_on_it(monkeypatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens on port 9
    unreachable = firestore.Client(project="nowhere")
    writes = WriteBatcher(unreachable, {"retry": None, "timeout": 1.0})

    def create(i: int) -> type[Exception] | None:
        try:
            writes.create(unreachable.document(f"c/d{i}"), {})
        except exceptions.GoogleAPIError as error:
            return type(error)
        return None

    with ThreadPoolExecutor(5) as pool:
        failures = list(pool.map(create, range(5)))
    assert all(failure is not None for failure in failures), failures
