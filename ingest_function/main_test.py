"""The HTTP edge through functions-framework's test client, on the real Pub/Sub and Firestore
emulators. Failures are real too: Pub/Sub or Firestore addressed at a port nothing listens on, a
relay to Firestore cut in the middle of a request, or a relay to Pub/Sub frozen for a while."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import flask
import pytest
from functions_framework import create_app
from google.cloud import firestore, pubsub_v1

from herald import events
from herald.clients import state_client
from herald.contracts import HEARTBEAT_ATTRIBUTE, MAX_BODY_BYTES, Envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.events import Status
from herald.status import StatusStore
from herald.local.processes import free_port
from herald.settings import Settings
from ingest_function.idempotency import HEADER, key_for
from ingest_function.outbox import COLLECTION as OUTBOX

PROJECT = "herald-ingest-test"
SOURCE = Path(__file__).with_name("main.py")
AUTH = {"Authorization": "Bearer test-key"}
SENDER = "orders-svc"
TIMEOUTS = ("HERALD_PUBLISH_TIMEOUT_S", "HERALD_FIRESTORE_TIMEOUT_S")
# The emulator honours return_immediately (deprecated in production): it keeps empty pulls fast.
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@dataclass(frozen=True)
class Probe:
    """A subscription on a topic, pulled without waiting: the emulator shows a message as soon as
    its publish is acknowledged, and every 202 here comes after that (or after the outbox write)."""

    subscriber: pubsub_v1.SubscriberClient
    subscription: str

    def pull(self) -> list[pubsub_v1.types.PubsubMessage]:
        received = []
        while True:
            response = self.subscriber.pull(subscription=self.subscription, max_messages=100,
                                            return_immediately=True)
            if not response.received_messages:
                return received
            self.subscriber.acknowledge(subscription=self.subscription,
                                        ack_ids=[m.ack_id for m in response.received_messages])
            received += [m.message for m in response.received_messages]


@pytest.fixture(scope="module")
def probe(pubsub_emulator: str) -> Probe:
    """Made while the environment points at the real emulator, so it keeps pulling from it when a
    test points an app elsewhere."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/notification-requests").name
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/probe", topic=topic)
    return Probe(subscriber, f"projects/{PROJECT}/subscriptions/probe")


@pytest.fixture(scope="module")
def urgent_probe(pubsub_emulator: str) -> Probe:
    """A subscription on the urgent lane's topic, where high-priority requests go."""
    topic = pubsub_v1.PublisherClient().create_topic(
        name=f"projects/{PROJECT}/topics/notification-requests-urgent").name
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/urgent-probe",
                                   topic=topic)
    return Probe(subscriber, f"projects/{PROJECT}/subscriptions/urgent-probe")


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    """Where the app keeps its idempotency records and outbox entries."""
    return state_client(Settings(project=PROJECT))


@pytest.fixture
def make_app(probe: Probe, pubsub_emulator: str, firestore_emulator: str,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., flask.Flask]:
    """`make_app(target, **env)`: a freshly loaded main.py. An app builds its clients from the
    environment at its first request, so each call sets every variable (the real emulators unless
    `env` says otherwise); use an app before making the next."""
    def make(target: str = "notifications", **env: str) -> flask.Flask:
        healthy = {"HERALD_PROJECT": PROJECT,
                   "HERALD_API_KEYS": "test-key:orders-svc,other-key:news-svc",
                   "PUBSUB_EMULATOR_HOST": pubsub_emulator,
                   "FIRESTORE_EMULATOR_HOST": firestore_emulator,
                   "HERALD_OUTBOX_POLL_WINDOW_S": "0"}
        for name in TIMEOUTS:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**healthy, **env}.items():
            monkeypatch.setenv(name, value)
        return create_app(target=target, source=str(SOURCE))
    return make


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


def keyed(by: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A body and headers whose idempotency key is fresh: an Idempotency-Key header (the body has
    no notificationId, so the one generated for the first request must come back), or a supplied
    notificationId."""
    if by == HEADER:
        body = {k: v for k, v in DESIGN_BODY.items() if k != "notificationId"}
        return body, {**AUTH, HEADER: uuid.uuid4().hex}
    return {**DESIGN_BODY, "notificationId": f"n-{uuid.uuid4().hex}"}, AUTH


def record(db: firestore.Client, body: dict[str, Any], headers: dict[str, str]) -> dict | None:
    """The idempotency record of a keyed request, None if there is none."""
    key = key_for(SENDER, headers.get(HEADER), body)
    return db.collection("idempotency").document(key.doc_id).get().to_dict()


def test_accepted_request_is_published_with_sender_and_attributes(client, probe,
                                                                   urgent_probe) -> None:
    """A high-priority request goes to the urgent lane's topic (issue 12), nothing to routine."""
    probe.pull()
    response = client.post("/v1/notifications", json={**DESIGN_BODY, "priority": "high"},
                           headers=AUTH)
    assert response.status_code == 202
    body = response.get_json()
    assert body["notificationId"] == "n-1"
    assert probe.pull() == []
    [message] = urgent_probe.pull()
    assert message.attributes["channel"] == "push"
    assert message.attributes["priority"] == "high"
    assert message.attributes["trace_id"] == body["traceId"]
    envelope = Envelope.from_pubsub(message.data)
    assert envelope.sender_client == "orders-svc"
    assert envelope.request.user_id == "u-1"


def test_missing_notification_id_is_generated_and_returned(client, probe) -> None:
    probe.pull()
    body = {k: v for k, v in DESIGN_BODY.items() if k != "notificationId"}
    response = client.post("/v1/notifications", json=body, headers=AUTH)
    assert response.status_code == 202
    [message] = probe.pull()
    assert Envelope.from_pubsub(message.data).request.notification_id == \
        response.get_json()["notificationId"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic test-key"}])
def test_unauthenticated_requests_get_401_and_publish_nothing(client, probe, headers) -> None:
    probe.pull()
    response = client.post("/v1/notifications", json=DESIGN_BODY, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "Authorization"
    assert probe.pull() == []


@pytest.mark.parametrize("data, status, field", [
    ("{not json", 400, "body"),
    (json.dumps({k: v for k, v in DESIGN_BODY.items() if k != "userId"}), 400, "userId"),
    (json.dumps({**DESIGN_BODY, "notificationType": "fax"}), 400, "notificationType"),
    (json.dumps({**DESIGN_BODY, "userId": "auth0|acme/alice"}), 400, "userId"),
    (json.dumps({**DESIGN_BODY, "userId": "u-\ud800"}), 400, "userId"),
    (json.dumps({**DESIGN_BODY, "notificationInfo": {"title": "t", "content": "x" * 5000}}),
     400, "notificationInfo"),  # over FCM's 4,096-byte payload
    (json.dumps({**DESIGN_BODY, "notificationInfo": {"title": "t", "content": "c",
                                                      "data": {"google.sent_time": "1"}}}),
     400, "notificationInfo.data.google.sent_time"),  # a key FCM reserves
    (json.dumps({**DESIGN_BODY, "notificationType": "sms",
                 "notificationInfo": {"title": "t", "content": "x" * 2000}}),
     400, "notificationInfo.content"),  # over Twilio's 1,600 characters
    (json.dumps({**DESIGN_BODY, "notificationInfo": {"title": "t",
                                                      "content": "x" * MAX_BODY_BYTES}}),
     413, "body"),
])
def test_bad_input_names_the_field_and_publishes_nothing(client, probe, data, status,
                                                         field) -> None:
    probe.pull()
    response = client.post("/v1/notifications", data=data, headers=AUTH,
                           content_type="application/json")
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert response.get_json()["error"]["message"]
    assert probe.pull() == []


def test_unknown_route_and_method(client) -> None:
    assert client.get("/v1/notifications", headers=AUTH).status_code == 405
    assert client.post("/v2/whatever", json={}, headers=AUTH).status_code == 404


@pytest.mark.parametrize("by", [HEADER, "notificationId"])
def test_a_repeat_gets_the_original_answer_and_is_published_once(client, probe, by) -> None:
    probe.pull()
    body, headers = keyed(by)
    first = client.post("/v1/notifications", json=body, headers=headers)
    reordered = dict(reversed(list(body.items())))  # the same JSON, serialised differently
    again = client.post("/v1/notifications", json=reordered, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json() == first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    [message] = probe.pull()
    assert message.attributes["trace_id"] == first.get_json()["traceId"]


@pytest.mark.parametrize("by", [HEADER, "notificationId"])
def test_the_same_key_with_another_body_is_409_naming_the_key(client, probe, by) -> None:
    probe.pull()
    body, headers = keyed(by)
    assert client.post("/v1/notifications", json=body, headers=headers).status_code == 202
    changed = {**body, "notificationInfo": {"title": "Shipped", "content": "Another text"}}
    response = client.post("/v1/notifications", json=changed, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == by
    assert len(probe.pull()) == 1


def test_a_bad_idempotency_key_is_400_naming_it(client, probe) -> None:
    probe.pull()
    response = client.post("/v1/notifications", json=DESIGN_BODY,
                           headers={**AUTH, HEADER: "k" * 256})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == HEADER
    assert probe.pull() == []


def test_concurrent_identical_requests_publish_once(make_app, probe) -> None:
    probe.pull()
    app, (body, headers), start = make_app(), keyed(HEADER), threading.Barrier(8)

    def send(_: int) -> flask.Response:
        client = app.test_client()
        start.wait()
        return client.post("/v1/notifications", json=body, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    assert {response.status_code for response in responses} == {202}
    assert len({response.get_json()["traceId"] for response in responses}) == 1
    assert sum("Idempotent-Replayed" not in response.headers for response in responses) == 1
    assert len(probe.pull()) == 1


def test_pubsub_down_answers_202_from_the_outbox_and_replay_publishes_it_once(
        make_app, probe, db) -> None:
    probe.pull()
    down = {"PUBSUB_EMULATOR_HOST": closed_port(), "HERALD_PUBLISH_TIMEOUT_S": "0.3"}
    body, headers = keyed("notificationId")
    sender = make_app(**down).test_client()
    response = sender.post("/v1/notifications", json=body, headers=headers)
    assert response.status_code == 202
    trace = response.get_json()["traceId"]
    assert sender.post("/v1/notifications", json=body, headers=headers).get_json() == \
        response.get_json()  # outboxed counts as accepted for a repeat
    assert probe.pull() == []
    entry = db.collection(OUTBOX).document(trace).get().to_dict()
    assert (entry["state"], entry["attempts"]) == ("pending", 1)
    assert Envelope.from_pubsub(entry["data"]).trace_id == entry["attributes"]["trace_id"] == trace
    assert record(db, body, headers)["state"] == "accepted"

    still_down = make_app("replay_outbox", **down).test_client().post("/")
    assert still_down.status_code == 503
    assert still_down.get_json()["published"] == 0

    replayer = make_app("replay_outbox").test_client()
    assert replayer.post("/").get_json() == {"published": 1, "error": None, "refused": 0}
    [message] = probe.pull()
    assert message.attributes["trace_id"] == trace
    assert db.collection(OUTBOX).document(trace).get().get("state") == "published"
    assert replayer.post("/").get_json() == {"published": 0, "error": None, "refused": 0}
    assert probe.pull() == []


def test_replay_outbox_refuses_a_bad_limit(make_app) -> None:
    response = make_app("replay_outbox").test_client().post("/?limit=0")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "limit"


def test_with_firestore_down_requests_are_still_accepted(make_app, probe) -> None:
    probe.pull()
    app = make_app(FIRESTORE_EMULATOR_HOST=closed_port(), HERALD_FIRESTORE_TIMEOUT_S="0.3")
    body, headers = keyed(HEADER)
    response = app.test_client().post("/v1/notifications", json=body, headers=headers)
    assert response.status_code == 202
    [message] = probe.pull()
    assert message.attributes["trace_id"] == response.get_json()["traceId"]


def test_with_pubsub_and_firestore_down_the_answer_is_503(make_app, probe) -> None:
    probe.pull()
    app = make_app(PUBSUB_EMULATOR_HOST=closed_port(), FIRESTORE_EMULATOR_HOST=closed_port(),
                   HERALD_PUBLISH_TIMEOUT_S="0.3", HERALD_FIRESTORE_TIMEOUT_S="0.3")
    body, headers = keyed(HEADER)
    response = app.test_client().post("/v1/notifications", json=body, headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["field"] == "queue"
    assert probe.pull() == []


class Relay:
    """A TCP relay to `target` that a test can cut (Firestore lost in the middle of a request) or
    freeze and thaw (bytes held, not refused: a SIGSTOPped emulator, a Pub/Sub outage)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._flowing = threading.Event()
        self._flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self._target)
            self._open += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                self._flowing.wait()
                sink.sendall(chunk)
        except OSError:
            pass

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        for sock in [self._listener, *self._open]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_firestore_lost_after_the_claim_is_503_and_the_retry_stores_the_request(
        make_app, probe, db, firestore_emulator) -> None:
    """The claim is written, Pub/Sub is down, then Firestore goes too: the outbox write and the
    claim's release both fail. The pending claim left behind must not answer the retry with a
    202: the retry waits out its lease, takes it over and publishes the request."""
    probe.pull()
    relay = Relay(firestore_emulator)
    body, headers = keyed(HEADER)
    # The claim must succeed through the relay within the Firestore timeout (it is the app's first
    # Firestore call, channel setup included), so not the 0.3 s of the tests where it must fail.
    app = make_app(PUBSUB_EMULATOR_HOST=closed_port(), FIRESTORE_EMULATOR_HOST=relay.address,
                   HERALD_PUBLISH_TIMEOUT_S="2", HERALD_FIRESTORE_TIMEOUT_S="1")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(app.test_client().post, "/v1/notifications", json=body,
                              headers=headers)
        wait_until(lambda: record(db, body, headers) is not None)
        relay.cut()  # while the function waits on Pub/Sub
        response = pending.result()
    assert response.status_code == 503
    left = record(db, body, headers)
    assert left["state"] == "pending"
    trace = left["response"]["traceId"]
    assert not db.collection(OUTBOX).document(trace).get().exists

    retry = make_app().test_client().post("/v1/notifications", json=body, headers=headers)
    assert retry.status_code == 202
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.get_json()["traceId"] == trace  # finished under the claim's ids
    [message] = probe.pull()
    assert message.attributes["trace_id"] == trace
    assert record(db, body, headers)["state"] == "accepted"


def test_while_pubsub_is_frozen_the_breaker_stores_requests_in_the_outbox_at_once(
        make_app, probe, db, pubsub_emulator) -> None:
    """The first publishes wait until the breaker opens (far less than the 10 s publish timeout),
    later requests go to the outbox without waiting for Pub/Sub; every 202 is stored; a repeat
    gets its original answer; once Pub/Sub answers the background probe closes the breaker and
    requests are published again."""
    probe.pull()
    relay = Relay(pubsub_emulator)
    app = make_app(PUBSUB_EMULATOR_HOST=relay.address, HERALD_PUBLISH_SLOW_S="0.3",
                   HERALD_BREAKER_FAILURES="3", HERALD_BREAKER_PROBE_S="0.2")

    def post(body: dict[str, Any], headers: dict[str, str]) -> tuple[flask.Response, float]:
        began = time.monotonic()
        response = app.test_client().post("/v1/notifications", json=body, headers=headers)
        return response, time.monotonic() - began

    response, _ = post(*keyed(HEADER))  # Pub/Sub up: published, the channel is open
    assert [m.attributes["trace_id"] for m in probe.pull()] == [response.get_json()["traceId"]]
    relay.freeze()
    requests = [keyed(HEADER) for _ in range(8)]
    with ThreadPoolExecutor(3) as pool:
        first = list(pool.map(lambda request: post(*request), requests[:3]))
    later = [post(*request) for request in requests[3:]]
    assert all(response.status_code == 202 for response, _ in first + later)
    assert max(elapsed for _, elapsed in first) < 3, "released when the breaker opened"
    assert max(elapsed for _, elapsed in later) < 1, "did not wait for Pub/Sub"
    for (body, headers), (response, _) in zip(requests, first + later):
        entry = db.collection(OUTBOX).document(response.get_json()["traceId"]).get().to_dict()
        assert entry["state"] == "pending"
        assert record(db, body, headers)["state"] == "accepted"
    repeat, elapsed = post(*requests[-1])
    assert repeat.headers["Idempotent-Replayed"] == "true" and elapsed < 1
    assert repeat.get_json() == later[-1][0].get_json()

    relay.thaw()
    deadline = time.monotonic() + 10
    while not any(HEARTBEAT_ATTRIBUTE in m.attributes for m in probe.pull()):  # a probe landed
        assert time.monotonic() < deadline, "no probe published after Pub/Sub came back"
        time.sleep(0.1)
    response, _ = post(*keyed(HEADER))
    assert response.status_code == 202
    trace = response.get_json()["traceId"]
    assert trace in [m.attributes.get("trace_id") for m in probe.pull()]
    assert not db.collection(OUTBOX).document(trace).get().exists


# --- GET /v1/notifications/{notificationId} (ingest_function/status.py) -----------------------

def test_a_sender_reads_its_requests_deliveries_and_no_one_elses(client, db) -> None:
    request = parse_request({
        "userIds": ["u-1", "u-2"], "notificationId": "status-n-1", "serviceType": "orders",
        "categoryType": "delivery", "notificationType": "push", "templateType": "t",
        "notificationInfo": {"title": "T", "content": "C"}})
    envelope = Envelope(request, "trace-status", "orders-svc", "2026-11-02T09:00:00.000000Z")
    StatusStore(db, timedelta(days=1)).record([
        events.delivery_event(envelope, f"span-{n}", Status.SENT, channel="push",
                              platform="android", provider="fcm",
                              event_ts="2026-11-02T09:00:01Z") for n in range(2)])
    owner = {"Authorization": "Bearer test-key"}

    started = time.monotonic()
    response = client.get("/v1/notifications/status-n-1", headers=owner)
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert [(d["deliveryId"], d["channel"], d["status"]) for d in body["deliveries"]] == [
        ("span-0", "push", "sent"), ("span-1", "push", "sent")]
    assert elapsed < 0.5
    other = client.get("/v1/notifications/status-n-1",
                       headers={"Authorization": "Bearer other-key"})
    assert (other.status_code, other.get_json()["error"]["field"]) == (404, "notificationId")
    assert client.get("/v1/notifications/status-n-2", headers=owner).status_code == 404
    assert client.get("/v1/notifications/status-n-1").status_code == 401
def test_delete_cancels_a_scheduled_notification_of_its_sender_only(client, probe) -> None:
    """Issue 12: DELETE /v1/notifications/{id}: 200 and canceled while scheduled (again for a
    repeat), 404 for another sender's id or an unknown one, 409 once it was sent."""
    probe.pull()
    send_time = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    body = {**DESIGN_BODY, "notificationId": f"n-{uuid.uuid4().hex}",
            "metadata": {"sendTime": send_time}}
    assert client.post("/v1/notifications", json=body, headers=AUTH).status_code == 202
    [message] = probe.pull()
    assert "release" not in message.attributes  # the pipeline holds it: a scheduled event
    path = f"/v1/notifications/{body['notificationId']}"
    other = client.delete(path, headers={"Authorization": "Bearer other-key"})
    assert (other.status_code, other.get_json()["error"]["field"]) == (404, "notificationId")
    assert client.delete(path).status_code == 401
    for _ in range(2):
        canceled = client.delete(path, headers=AUTH)
        assert (canceled.status_code, canceled.get_json()) == (
            200, {"notificationId": body["notificationId"], "status": "canceled"})
    assert client.delete("/v1/notifications/no-such-id", headers=AUTH).status_code == 404


def test_delete_of_a_notification_sent_at_once_is_409(client, probe) -> None:
    body, headers = keyed("notificationId")
    assert client.post("/v1/notifications", json=body, headers=headers).status_code == 202
    response = client.delete(f"/v1/notifications/{body['notificationId']}", headers=AUTH)
    assert (response.status_code, response.get_json()["error"]["field"]) == (409, "notificationId")
    assert "already sent" in response.get_json()["error"]["message"]
