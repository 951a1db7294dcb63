"""The webhook endpoints through functions-framework, publishing to the real Pub/Sub emulator.

Every documented payload in tests/fixtures/providers is posted, signed with the sandbox's signers
(written from the providers' schemes) and verified by the endpoints with the SDKs' validators; the
last test runs the whole path over real HTTP from the sandbox, with the official senders setting
up the callbacks.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from functions_framework import create_app
from google.cloud import pubsub_v1
from werkzeug.serving import make_server

from herald.callback_events import DeliveryCallback
from herald.contracts import Channel
from herald.providers import contract_fixtures
from herald.local.processes import free_port
from herald.providers.base import Outgoing
from herald.providers.sendgrid.sender import SendGridSender
from herald.providers.twilio.sender import TwilioSender
from herald.sandbox import SandboxServer, SendGridSigner
from herald.sandbox.callbacks import twilio_signature

PROJECT = "herald-callbacks-test"
SOURCE = Path(__file__).with_name("main.py")
TOPIC = f"projects/{PROJECT}/topics/notification-callbacks"
PUBLIC_BASE = "https://herald.example"  # what Twilio was told; the test client is http://localhost
TOKEN = "test-twilio-token"
SIGNER = SendGridSigner.generate()
TWILIO_QUERY = "notification_id=n-1&span_id=s-1"
SID = "SM" + "c" * 32
X_MESSAGE_ID = "Kx9_w-2pQ3a1b2c3d4e5fA"
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture(scope="module")
def env(pubsub_emulator: str) -> Iterator[pytest.MonkeyPatch]:
    """The function's environment, and the callbacks topic it publishes to."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HERALD_PROJECT", PROJECT)
    monkeypatch.setenv("HERALD_CALLBACK_BASE_URL", PUBLIC_BASE)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", SIGNER.public_key)
    pubsub_v1.PublisherClient().create_topic(name=TOPIC)
    yield monkeypatch
    monkeypatch.undo()


@pytest.fixture(scope="module")
def client(env: pytest.MonkeyPatch) -> Any:
    return create_app(target="notifications", source=str(SOURCE)).test_client()


@pytest.fixture
def published(env: pytest.MonkeyPatch) -> Iterator[Any]:
    """pull(n): the callbacks published since the test started, once there are n (n=0: now)."""
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.create_subscription(
        name=f"projects/{PROJECT}/subscriptions/probe-{uuid.uuid4().hex}", topic=TOPIC).name

    def pull(count: int) -> list[tuple[DeliveryCallback, dict[str, str]]]:
        received: list[Any] = []
        deadline = time.monotonic() + 5
        while True:
            response = subscriber.pull(subscription=subscription, max_messages=100,
                                       return_immediately=True)
            if response.received_messages:
                subscriber.acknowledge(subscription=subscription,
                                       ack_ids=[m.ack_id for m in response.received_messages])
            received += [m.message for m in response.received_messages]
            if len(received) >= count and (count or not response.received_messages):
                break
            assert time.monotonic() < deadline, f"{len(received)} of {count} callbacks"
            time.sleep(0.02)
        return [(DeliveryCallback.from_pubsub(m.data), dict(m.attributes)) for m in received]

    yield pull
    subscriber.delete_subscription(subscription=subscription)


def twilio_form(status: str = "delivered", **extra: str) -> dict[str, str]:
    return {"MessageSid": SID, "MessageStatus": status, "AccountSid": "AC1",
            "To": "+15551234567", "From": "+15550000000", **extra}


def post_twilio(client: Any, form: dict[str, str], *, query: str = TWILIO_QUERY,
                signed_url: str | None = None, token: str = TOKEN,
                path: str = "/v1/callbacks/twilio") -> Any:
    path = f"{path}?{query}" if query else path
    signature = twilio_signature(token, signed_url or f"{PUBLIC_BASE}{path}", form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def sendgrid_event(event: str, **extra: Any) -> dict[str, Any]:
    return {"email": "a@x.io", "timestamp": 1700000000, "event": event,
            "sg_event_id": f"ev-{event}", "notification_id": "n-2", "span_id": "s-2",
            "sg_message_id": f"{X_MESSAGE_ID}.filterdrecv-5645d9c87f-0.0", **extra}


def sendgrid_headers(body: bytes, signer: SendGridSigner = SIGNER,
                     timestamp: str = "1700000030") -> dict[str, str]:
    return {"X-Twilio-Email-Event-Webhook-Signature": signer.sign(timestamp, body),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json"}


def post_sendgrid(client: Any, events: Any, **headers: str) -> Any:
    body = json.dumps(events).encode()
    return client.post("/v1/callbacks/sendgrid", data=body,
                       headers={**sendgrid_headers(body), **headers})


TWILIO_FIXTURES = contract_fixtures.load("twilio", "callbacks")
SENDGRID_FIXTURES = contract_fixtures.load("sendgrid", "events")
PATHS = {"status_callback": "/v1/callbacks/twilio",
         "incoming_message": "/v1/callbacks/twilio/incoming"}


def subset(callback: DeliveryCallback, wanted: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(callback, name) for name in wanted}


@pytest.mark.parametrize("name", sorted(TWILIO_FIXTURES))
def test_each_documented_twilio_webhook_is_published_as_documented(client, published, name):
    fixture = TWILIO_FIXTURES[name]
    query = urlencode(fixture["query"])

    response = post_twilio(client, fixture["form"], query=query,
                           path=PATHS[fixture["kind"]])

    assert response.status_code == 204
    callbacks = published(len(fixture["expected"]))
    assert len(callbacks) == len(fixture["expected"])
    for callback, attributes in callbacks:
        assert attributes == {"provider": "twilio", "status": callback.status.value,
                              "callback_id": callback.callback_id}
        assert callback.occurred_at.endswith("Z")
    for wanted in fixture["expected"]:
        if wanted["occurred_at"] == "received":
            wanted = {k: v for k, v in wanted.items() if k != "occurred_at"}
        [_] = [c for c, _ in callbacks if subset(c, wanted) == wanted]


@pytest.mark.parametrize("name", sorted(SENDGRID_FIXTURES))
def test_each_documented_sendgrid_batch_is_published_as_documented(client, published, name):
    fixture = SENDGRID_FIXTURES[name]
    expected = fixture["expected"]

    response = post_sendgrid(client, fixture["events"])

    assert response.status_code == 200
    assert response.get_json() == {"published": len(expected["callbacks"]),
                                   "ignored": expected["ignored"], "invalid": expected["invalid"]}
    callbacks = {(c.status.value, c.occurred_at, c.span_id): c
                 for c, _ in published(len(expected["callbacks"]))}
    assert len(callbacks) == len(expected["callbacks"])
    for wanted in expected["callbacks"]:
        [_] = [c for c in callbacks.values() if subset(c, wanted) == wanted]


def test_a_json_twilio_webhook_is_verified_by_its_body_hash(client, published):
    body = json.dumps(twilio_form("delivered"))
    query = f"{TWILIO_QUERY}&bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    path = f"/v1/callbacks/twilio?{query}"
    signature = twilio_signature(TOKEN, f"{PUBLIC_BASE}{path}", {})

    response = client.post(path, data=body, content_type="application/json",
                           headers={"X-Twilio-Signature": signature})
    tampered = client.post(path, data=body.replace("delivered", "failed"),
                           content_type="application/json",
                           headers={"X-Twilio-Signature": signature})

    assert (response.status_code, tampered.status_code) == (204, 401)
    [(callback, _)] = published(1)
    assert (callback.status.value, callback.span_id) == ("delivered", "s-1")


@pytest.mark.parametrize("tamper", ["no signature", "wrong token", "other query", "other body",
                                    "the function's own url"])
def test_a_badly_signed_twilio_callback_is_401_and_not_published(client, published, tamper):
    path = f"/v1/callbacks/twilio?{TWILIO_QUERY}"
    form = twilio_form()
    if tamper == "no signature":
        response = client.post(path, data=form)
    elif tamper == "wrong token":
        response = post_twilio(client, form, token="not-the-token")
    elif tamper == "other query":  # ids moved to another delivery after signing
        response = post_twilio(client, form, query="notification_id=n-1&span_id=s-9",
                               signed_url=f"{PUBLIC_BASE}{path}")
    elif tamper == "other body":
        signature = twilio_signature(TOKEN, f"{PUBLIC_BASE}{path}", form)
        response = client.post(path, data={**form, "MessageStatus": "failed"},
                               headers={"X-Twilio-Signature": signature})
    else:  # Twilio signs the public URL it was given, not the one the function sees
        response = post_twilio(client, form, signed_url=f"http://localhost{path}")

    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "X-Twilio-Signature"
    assert published(0) == []


def test_a_twilio_status_herald_does_not_track_is_acknowledged_unpublished(client, published):
    assert post_twilio(client, twilio_form("queued")).status_code == 204
    assert published(0) == []


def test_a_signed_twilio_callback_without_a_sid_is_400(client, published):
    form = {k: v for k, v in twilio_form().items() if k != "MessageSid"}

    response = post_twilio(client, form)

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "MessageSid"
    assert published(0) == []


@pytest.mark.parametrize("tamper", ["no signature", "no timestamp", "other body",
                                    "other timestamp", "other key", "not base64"])
def test_a_badly_signed_sendgrid_batch_is_401_and_not_published(client, published, tamper):
    body = json.dumps([sendgrid_event("delivered")]).encode()
    headers = sendgrid_headers(body)
    if tamper == "no signature":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    elif tamper == "no timestamp":
        del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    elif tamper == "other body":
        body = body.replace(b"delivered", b"bounce")
    elif tamper == "other timestamp":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = "1700000031"
    elif tamper == "other key":
        headers = sendgrid_headers(body, SendGridSigner.generate())
    else:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "%%%"

    response = client.post("/v1/callbacks/sendgrid", data=body, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "X-Twilio-Email-Event-Webhook-Signature"
    assert published(0) == []


@pytest.mark.parametrize("events", [{"event": "delivered"}, "[", "null"])
def test_a_signed_body_that_is_not_an_event_array_is_400(client, published, events):
    body = (events if isinstance(events, str) else json.dumps(events)).encode()

    response = client.post("/v1/callbacks/sendgrid", data=body, headers=sendgrid_headers(body))

    assert response.status_code == 400
    assert published(0) == []


def test_duplicates_carry_the_same_callback_id(client, published):
    events = [sendgrid_event("processed"), sendgrid_event("delivered")]
    for _ in range(2):
        assert post_twilio(client, twilio_form()).status_code == 204
    # SendGrid's retry of a batch is signed afresh, with a new timestamp.
    assert post_sendgrid(client, events).status_code == 200
    body = json.dumps(events).encode()
    retried = client.post("/v1/callbacks/sendgrid", data=body,
                          headers=sendgrid_headers(body, timestamp="1700000090"))
    assert retried.status_code == 200

    ids: dict[str, list[str]] = {}
    for callback, _ in published(6):
        ids.setdefault(f"{callback.provider}/{callback.status}", []).append(callback.callback_id)

    assert sorted(ids) == ["sendgrid/delivered", "sendgrid/provider_accepted", "twilio/delivered"]
    assert all(len(same) == 2 and same[0] == same[1] for same in ids.values())
    assert len({same[0] for same in ids.values()}) == 3


@pytest.mark.parametrize("path", ["/v1/callbacks/twilio", "/v1/callbacks/twilio/incoming",
                                  "/v1/callbacks/sendgrid"])
def test_only_post_and_bounded_bodies(client, path):
    assert client.get(path).status_code == 405
    assert client.post(path, data=b"x" * (1024 * 1024 + 1)).status_code == 413


def test_sendgrid_without_a_configured_key_is_503_so_sendgrid_retries(monkeypatch, published):
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY")
    unconfigured = create_app(target="notifications", source=str(SOURCE)).test_client()

    response = post_sendgrid(unconfigured, [sendgrid_event("delivered")])

    assert response.status_code == 503
    assert published(0) == []


def test_sandbox_callbacks_reach_the_topic_over_http(monkeypatch, published):
    """The local stack's path: the senders send through the sandbox, which calls the function
    back over HTTP, signed with Herald's default Twilio token and its own SendGrid key."""
    api = f"http://127.0.0.1:{free_port()}"
    fast = {"callback_delay_ms": 0}
    with SandboxServer(latency_ms=0, config={"twilio": fast, "sendgrid": fast},
                       sendgrid_webhook_url=f"{api}/v1/callbacks/sendgrid") as sandbox:
        monkeypatch.setenv("HERALD_CALLBACK_BASE_URL", api)
        monkeypatch.delenv("TWILIO_AUTH_TOKEN")
        monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", sandbox.sendgrid_signer.public_key)
        server = make_server("127.0.0.1", int(api.rsplit(":", 1)[1]),
                             create_app(target="notifications", source=str(SOURCE)),
                             threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        senders = ((TwilioSender("AC" + "0" * 32, "token", "+15550001111", sandbox.url,
                                 status_callback_base=api), Channel.SMS, "+15551234567"),
                   (SendGridSender("SG.key", "herald@example.com", sandbox.url), Channel.EMAIL,
                    "a@x.io"))
        try:
            for sender, channel, address in senders:
                [result] = sender.send([Outgoing(f"span-{channel}", f"n-{channel}", channel,
                                                 address, "Title", "Body")])
                assert result.ok
            callbacks = [callback for callback, _ in published(4)]
        finally:
            for sender, _, _ in senders:
                sender.close()
            server.shutdown()

    assert sorted((c.provider, c.status.value, c.notification_id, c.span_id)
                  for c in callbacks) == [
        ("sendgrid", "delivered", "n-email", "span-email"),
        ("sendgrid", "provider_accepted", "n-email", "span-email"),
        ("twilio", "delivered", "n-sms", "span-sms"),
        ("twilio", "provider_accepted", "n-sms", "span-sms")]


# --- app receipts (ingest_function/receipts.py) ------------------------------------------------

from herald.events import Status  # noqa: E402
from herald.settings import Settings  # noqa: E402

RECEIPTS = Settings.from_env({}).receipts  # the function's default key: no HERALD_RECEIPT_KEY set
SPAN = "0123456789abcdef"


def post_receipt(client: Any, body: Any) -> Any:
    return client.post("/v1/receipts", json=body)


@pytest.mark.parametrize(("event", "status"), [("received", Status.DELIVERED),
                                               ("opened", Status.OPENED)])
def test_a_receipt_is_published_as_its_deliverys_callback(client, published, event, status):
    token = RECEIPTS.token(SPAN)

    response = post_receipt(client, {"token": token, "event": event,
                                     "at": "2026-11-02T09:00:05Z"})

    assert response.status_code == 204, response.get_data(as_text=True)
    [(report, attributes)] = published(1)
    assert (report.provider, report.span_id, report.status, report.occurred_at) == (
        "fcm", SPAN, status, "2026-11-02T09:00:05Z")
    assert attributes["status"] == status.value
    event_row = report.to_event()
    assert (event_row["channel"], event_row["span_id"]) == ("push", SPAN)


def test_a_repeated_or_reordered_receipt_is_the_same_event(client, published):
    token = RECEIPTS.token(SPAN)
    for event, at in (("opened", "2026-11-02T09:01:00Z"), ("received", "2026-11-02T09:00:05Z"),
                      ("received", "2026-11-02T09:00:09Z")):
        assert post_receipt(client, {"token": token, "event": event, "at": at}).status_code == 204

    reports = [report for report, _ in published(3)]
    received = [r.to_event()["event_id"] for r in reports if r.status is Status.DELIVERED]
    assert len(received) == 2 and len(set(received)) == 1
    assert len({r.to_event()["event_id"] for r in reports}) == 2


@pytest.mark.parametrize("token", [
    RECEIPTS.token(SPAN)[:-2] + "xx",                           # a guessed MAC
    "fedcba9876543210" + RECEIPTS.token(SPAN)[16:],             # moved to another delivery
    "garbage",
])
def test_a_forged_receipt_is_401_and_nothing_is_published(client, published, token):
    response = post_receipt(client, {"token": token, "event": "received",
                                     "at": "2026-11-02T09:00:05Z"})

    assert response.status_code == 401
    assert response.get_json()["error"]["field"] == "token"
    assert "forged" in response.get_json()["error"]["message"]
    assert published(0) == []


def test_an_expired_receipt_is_401(client, published):
    token = RECEIPTS.token(SPAN, now=time.time() - RECEIPTS.ttl_s - 1)

    response = post_receipt(client, {"token": token, "event": "opened",
                                     "at": "2026-11-02T09:00:05Z"})

    assert response.status_code == 401
    assert "expired" in response.get_json()["error"]["message"]
    assert published(0) == []


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"event": "received", "at": "2026-11-02T09:00:05Z"}, "token"),
    ({"token": 7, "event": "received", "at": "2026-11-02T09:00:05Z"}, "token"),
    ({"token": RECEIPTS.token(SPAN), "event": "clicked", "at": "2026-11-02T09:00:05Z"}, "event"),
    ({"token": RECEIPTS.token(SPAN), "event": "received"}, "at"),
    ({"token": RECEIPTS.token(SPAN), "event": "received", "at": "2026-11-02T09:00:05"}, "at"),
    ({"token": RECEIPTS.token(SPAN), "event": "received", "at": "yesterday"}, "at"),
])
def test_a_malformed_receipt_is_400_naming_the_field(client, published, body, field):
    response = post_receipt(client, body)

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert published(0) == []
