"""The status store on the Firestore emulator: what the pipelines write, what the API reads."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from herald import events
from herald.clients import state_client
from herald.contracts import Envelope, parse_request
from herald.events import Reason, Status
from herald.settings import Settings
from herald.status import REQUESTS_COLLECTION, StatusStore, current_status, request_key

BULK = parse_request({
    "userIds": ["u-1", "u-2"], "notificationId": "n-1", "serviceType": "orders",
    "categoryType": "delivery", "notificationType": "push", "templateType": "t",
    "notificationInfo": {"title": "T", "content": "C"}})
ENVELOPE = Envelope(BULK, "trace-1", "shop", "2026-11-02T09:00:00.000000Z")


@pytest.fixture
def store(firestore_emulator: str) -> StatusStore:
    db = state_client(Settings(project=f"status-{uuid.uuid4().hex[:8]}"))
    return StatusStore(db, timedelta(days=30))


def _sent(span: str, platform: str, ms: int) -> dict:
    return events.delivery_event(ENVELOPE, span, Status.SENT, channel="push", platform=platform,
                                 provider="fcm", user_id="u-1",
                                 event_ts=f"2026-11-02T09:00:00.{ms:03d}000Z")


def _callback(span: str, status: Status, at: str) -> dict:
    return events.callback_event(span_id=span, status=status, occurred_at=at,
                                 notification_id="n-1", provider="fcm",
                                 provider_message_id=None, callback_id=f"{span}/{status}")


def test_a_bulk_requests_deliveries_with_their_stages_in_order(store: StatusStore) -> None:
    failed = events.delivery_event(ENVELOPE, "span-c", Status.FAILED, channel="push",
                                   platform="web", provider="fcm", reason=Reason.NO_ADDRESS.value,
                                   event_ts="2026-11-02T09:00:00.300000Z")
    # callbacks first, reordered and repeated: the stage documents do not need the request's
    assert store.record([_callback("span-a", Status.OPENED, "2026-11-02T09:00:09Z"),
                         _callback("span-a", Status.DELIVERED, "2026-11-02T09:00:05Z"),
                         _callback("span-a", Status.DELIVERED, "2026-11-02T09:00:05Z")]) == (1, [])
    assert store.record([_sent("span-a", "android", 100), _sent("span-b", "ios", 200),
                         failed]) == (1, [])

    found = store.lookup("shop", "n-1")

    assert found["notificationId"] == "n-1"
    assert found["acceptedAt"] == "2026-11-02T09:00:00Z"
    by_span = {d["deliveryId"]: d for d in found["deliveries"]}
    assert by_span["span-a"]["status"] == "delivered"   # an open stands for delivered
    assert [s["stage"] for s in by_span["span-a"]["timeline"]] == ["sent", "delivered", "opened"]
    assert (by_span["span-b"]["platform"], by_span["span-b"]["status"]) == ("ios", "sent")
    assert (by_span["span-c"]["status"], by_span["span-c"]["reason"]) == ("failed", "no_address")
    assert by_span["span-a"]["timeline"][0]["at"] == "2026-11-02T09:00:00.100000Z"


def test_another_senders_request_is_not_found(store: StatusStore) -> None:
    store.record([_sent("span-a", "android", 100)])

    assert store.lookup("crm", "n-1") is None
    assert store.lookup("shop", "n-2") is None
    assert store.lookup("shop", "n-1") is not None


def test_documents_expire_after_the_operators_retention(store: StatusStore) -> None:
    store.record([_sent("span-a", "android", 100)])

    document = store._db.collection(REQUESTS_COLLECTION).document(
        request_key("shop", "n-1")).get().to_dict()
    expected = datetime.now(timezone.utc) + timedelta(days=30)
    assert abs((document["expires_at"] - expected).total_seconds()) < 60


def test_a_batch_of_1200_events_is_written_in_batch_calls(store: StatusStore) -> None:
    written = store.record([_sent(f"span-{n}", "android", n % 1000) for n in range(1200)]
                           + [_callback(f"span-{n}", Status.DELIVERED, "2026-11-02T09:00:05Z")
                              for n in range(1200)])

    assert written == (1 + 1200, [])
    assert len(store.lookup("shop", "n-1")["deliveries"]) == 1200


@pytest.mark.parametrize(("stages", "status"), [
    ({"sent": 1, "bounced": 3, "delivered": 2}, "bounced"),
    ({"sent": 1, "delivered": 3, "opened": 2}, "delivered"),
    ({"dead_letter": 1}, "dead_letter"),
    ({"deferred": 1, "sent": 2}, "sent"),
    ({}, None),
])
def test_current_status_follows_the_marts_precedence(stages, status) -> None:
    assert current_status(stages) == status


def test_a_request_document_firestore_refuses_is_reported_not_raised(store: StatusStore) -> None:
    """Firestore refuses a document over 1 MiB: the writes of the batch's other documents stand."""
    bulky = [events.delivery_event(ENVELOPE, f"span-{n:05d}", Status.SENT, channel="push",
                                   platform="android", provider="fcm", detail="x",
                                   reason="r" * 400, event_ts="2026-11-02T09:00:01Z")
             for n in range(3000)]

    written, refused = store.record([*bulky, _callback("span-x", Status.DELIVERED,
                                                       "2026-11-02T09:00:05Z")])

    assert (written, len(refused)) == (1, 1)
    assert store.lookup("shop", "n-1") is None
