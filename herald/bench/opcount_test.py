"""What the op counter counts, from the request messages the Google clients send."""

from __future__ import annotations

import json

from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import write as write_types
from google.pubsub_v1 import types as pubsub_types

from herald.bench import opcount


def _fresh(monkeypatch) -> None:
    monkeypatch.setattr(opcount, "_counts", opcount.Counter())


def test_commit_counts_writes_and_deletes_and_batch_get_the_documents_asked(monkeypatch, tmp_path):
    _fresh(monkeypatch)
    commit = firestore_types.CommitRequest(database="d", writes=[
        write_types.Write(update={"name": "projects/p/databases/d/documents/c/a"}),
        write_types.Write(delete="projects/p/databases/d/documents/c/b"),
        write_types.Write(update={"name": "projects/p/databases/d/documents/c/c"})])
    opcount.count_request("/google.firestore.v1.Firestore/Commit", commit)
    opcount.count_request("/google.firestore.v1.Firestore/BatchGetDocuments",
                          firestore_types.BatchGetDocumentsRequest(database="d",
                                                                   documents=["x", "y"]))
    opcount.count_documents("/google.firestore.v1.Firestore/RunQuery", 0)
    opcount._dump(tmp_path)
    counts = opcount.totals(tmp_path, [__import__("os").getpid()])
    assert (counts[opcount.FIRESTORE_WRITES], counts[opcount.FIRESTORE_DELETES],
            counts[opcount.FIRESTORE_READS]) == (2, 1, 3)  # an empty query still bills a read


def test_a_publish_bills_at_least_1000_bytes_and_acks_count_deliveries(monkeypatch):
    _fresh(monkeypatch)
    publish = pubsub_types.PublishRequest(topic="t", messages=[
        pubsub_types.PubsubMessage(data=b"x" * 100, attributes={"channel": "sms"})])
    opcount.count_request("/google.pubsub.v1.Publisher/Publish", publish)
    opcount.count_request("/google.pubsub.v1.Subscriber/Acknowledge",
                          pubsub_types.AcknowledgeRequest(subscription="s", ack_ids=["a", "b"]))
    assert opcount._counts[opcount.PUBSUB_PUBLISH_BYTES] == 100 + len("channel") + 3 + 20
    assert opcount._counts[opcount.PUBSUB_PUBLISH_BILLED] == 1000
    assert opcount._counts[opcount.PUBSUB_ACKED] == 2


def test_totals_sum_processes_and_difference_subtracts(tmp_path):
    (tmp_path / "1.json").write_text(json.dumps({opcount.BIGQUERY_ROWS: 3}))
    (tmp_path / "2.json").write_text(json.dumps({opcount.BIGQUERY_ROWS: 4}))
    total = opcount.totals(tmp_path, [1, 2, 3])
    assert total[opcount.BIGQUERY_ROWS] == 7
    assert opcount.difference(total, {opcount.BIGQUERY_ROWS: 5})[opcount.BIGQUERY_ROWS] == 2
