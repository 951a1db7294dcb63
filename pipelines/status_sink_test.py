"""RecordStatus on the DirectRunner and the Firestore emulator: a step after the events, batched."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from herald import events
from herald.clients import state_client
from herald.contracts import Envelope, parse_request
from herald.events import Status
from herald.settings import Settings
from herald.status import StatusStore
from pipelines.bigquery_sink import WriteBatching
from pipelines.status_sink import RecordStatus

REQUEST = parse_request({
    "userIds": [f"u-{n}" for n in range(30)], "notificationId": "n-1", "serviceType": "orders",
    "categoryType": "delivery", "notificationType": "push", "templateType": "t",
    "notificationInfo": {"title": "T", "content": "C"}})


@pytest.mark.parametrize("concurrency", [0, 2], ids=["on the runner's thread", "on a pool"])
def test_the_events_of_both_pipelines_reach_the_status_store(firestore_emulator: str, streamed,
                                                             concurrency: int) -> None:
    settings = Settings(project=f"status-sink-{uuid.uuid4().hex[:8]}")
    envelope = Envelope(REQUEST, "trace-1", "shop", "2026-11-02T09:00:00.000000Z")
    rows = [events.request_event(envelope, Status.ACCEPTED)]  # about no delivery: skipped
    for n in range(30):
        rows.append(events.delivery_event(envelope, f"span-{n:02d}", Status.SENT, channel="push",
                                          platform="ios", provider="fcm"))
        if n % 3 == 0:
            rows.append(events.callback_event(
                span_id=f"span-{n:02d}", status=Status.OPENED, occurred_at="2026-11-02T09:01:00Z",
                notification_id="n-1", provider="fcm", provider_message_id=None,
                callback_id=f"c-{n}"))

    streamed(rows, lambda stream: stream | RecordStatus(settings, shards=2, batching=WriteBatching(
        rows=7, buffer_s=0.1, concurrency=concurrency)))

    found = StatusStore(state_client(settings), timedelta(days=1)).lookup("shop", "n-1")
    statuses = {d["deliveryId"]: d["status"] for d in found["deliveries"]}
    assert statuses == {f"span-{n:02d}": "delivered" if n % 3 == 0 else "sent" for n in range(30)}
