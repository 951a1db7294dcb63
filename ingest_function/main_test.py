"""The HTTP edge through functions-framework's test client, publishing to the real Pub/Sub emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from functions_framework import create_app
from google.cloud import pubsub_v1

from herald.contracts import MAX_BODY_BYTES, Envelope
from herald.contracts_test import DESIGN_BODY

PROJECT = "herald-ingest-test"
SOURCE = Path(__file__).with_name("main.py")
AUTH = {"Authorization": "Bearer test-key"}
# The emulator honours return_immediately (deprecated in production): it keeps empty pulls fast.
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture(scope="module")
def client(pubsub_emulator: str) -> Iterator:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HERALD_PROJECT", PROJECT)
    monkeypatch.setenv("HERALD_API_KEYS", "test-key:orders-svc,other-key:news-svc")
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/notification-requests").name
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/probe", topic=topic)
    yield create_app(target="notifications", source=str(SOURCE)).test_client()
    monkeypatch.undo()


def pull_all() -> list:
    subscriber = pubsub_v1.SubscriberClient()
    subscription = f"projects/{PROJECT}/subscriptions/probe"
    response = subscriber.pull(subscription=subscription, max_messages=100, timeout=5,
                               return_immediately=True)
    if response.received_messages:
        subscriber.acknowledge(subscription=subscription,
                               ack_ids=[m.ack_id for m in response.received_messages])
    return [m.message for m in response.received_messages]


def test_accepted_request_is_published_with_sender_and_attributes(client) -> None:
    pull_all()
    response = client.post("/v1/notifications", json={**DESIGN_BODY, "priority": "high"},
                           headers=AUTH)
    assert response.status_code == 202
    body = response.get_json()
    assert body["notificationId"] == "n-1"
    [message] = pull_all()
    assert message.attributes["channel"] == "push"
    assert message.attributes["priority"] == "high"
    assert message.attributes["trace_id"] == body["traceId"]
    envelope = Envelope.from_pubsub(message.data)
    assert envelope.sender_client == "orders-svc"
    assert envelope.request.user_id == "u-1"


def test_missing_notification_id_is_generated_and_returned(client) -> None:
    pull_all()
    body = {k: v for k, v in DESIGN_BODY.items() if k != "notificationId"}
    response = client.post("/v1/notifications", json=body, headers=AUTH)
    assert response.status_code == 202
    [message] = pull_all()
    assert Envelope.from_pubsub(message.data).request.notification_id == \
        response.get_json()["notificationId"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic test-key"}])
def test_unauthenticated_requests_get_401_and_publish_nothing(client, headers) -> None:
    pull_all()
    response = client.post("/v1/notifications", json=DESIGN_BODY, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "Authorization"
    assert pull_all() == []


@pytest.mark.parametrize("data, status, field", [
    ("{not json", 400, "body"),
    (json.dumps({k: v for k, v in DESIGN_BODY.items() if k != "userId"}), 400, "userId"),
    (json.dumps({**DESIGN_BODY, "notificationType": "fax"}), 400, "notificationType"),
    (json.dumps({**DESIGN_BODY, "notificationInfo": {"title": "t",
                                                      "content": "x" * MAX_BODY_BYTES}}),
     413, "body"),
])
def test_bad_input_names_the_field_and_publishes_nothing(client, data, status, field) -> None:
    pull_all()
    response = client.post("/v1/notifications", data=data, headers=AUTH,
                           content_type="application/json")
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert response.get_json()["error"]["message"]
    assert pull_all() == []


def test_unknown_route_and_method(client) -> None:
    assert client.get("/v1/notifications", headers=AUTH).status_code == 405
    assert client.post("/v2/whatever", json={}, headers=AUTH).status_code == 404
