"""Delivery callbacks from the sandbox to a real HTTP receiver, checked with the SDKs'
validators."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import parse_qsl

import pytest
import requests
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from herald.providers import contract_fixtures
from herald.providers.sendgrid import event_webhook
from herald.providers.twilio import status_callbacks
from herald.sandbox import SandboxServer
from herald.sandbox import callbacks as sandbox_callbacks
from herald.settings import Settings

T = TypeVar("T")
TWILIO_PATH = "/2010-04-01/Accounts/AC0123/Messages.json"
MAIL_PATH = "/v3/mail/send"
SMS = {"To": "+15551234567", "From": "+15550000000", "Body": "hi"}
STEP_MS = 25  # from acceptance to the first callback, and between one message's callbacks


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


class Receiver:
    """A webhook endpoint that keeps every request and answers 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(Received(self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def wait_for(self, count: int) -> list[Received]:
        return wait_until(lambda: list(self.requests) if len(self.requests) >= count else None)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def wait_until(probe: Callable[[], T | None], timeout_s: float = 5.0) -> T:
    deadline = time.monotonic() + timeout_s
    while (result := probe()) is None:
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
    return result


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def sandbox_for(receiver: Receiver, **faults: dict[str, Any]) -> SandboxServer:
    config = {"seed": 1, "twilio": {"callback_delay_ms": STEP_MS},
              "sendgrid": {"callback_delay_ms": STEP_MS}}
    for provider, knobs in faults.items():
        config[provider] = {**config[provider], **knobs}
    return SandboxServer(latency_ms=0, config=config,
                         sendgrid_webhook_url=f"{receiver.url}/v1/callbacks/sendgrid").start()


@pytest.fixture
def make_sandbox(receiver: Receiver,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SandboxServer]]:
    # One POSTing thread, so callbacks arrive in the order they fall due. With several, the one
    # holding the earlier callback can be descheduled past STEP_MS on a busy machine and the later
    # one overtakes it: the order tests below would then fail on timing, not on the sandbox's plan.
    monkeypatch.setattr(sandbox_callbacks, "WORKERS", 1)
    made: list[SandboxServer] = []

    def factory(**faults: dict[str, Any]) -> SandboxServer:
        made.append(sandbox_for(receiver, **faults))
        return made[-1]

    yield factory
    for sandbox in made:
        sandbox.shutdown()


def send_sms(sandbox: SandboxServer, status_callback: str | None) -> str:
    form = {**SMS, **({"StatusCallback": status_callback} if status_callback else {})}
    response = requests.post(f"{sandbox.url}{TWILIO_PATH}", data=form, timeout=5)
    assert response.status_code == 201
    return response.json()["sid"]


def send_mail(sandbox: SandboxServer, html: bool = False) -> str:
    """A mail/send with two recipients; plain text, as Herald sends, or with an HTML part."""
    body = {"personalizations": [
        {"to": [{"email": "a@x.io"}], "custom_args": {"notification_id": "n1", "span_id": "s1"}},
        {"to": [{"email": "b@x.io"}], "custom_args": {"span_id": "s2"}}],
        "custom_args": {"notification_id": "shared"},
        "from": {"email": "h@x.io"}, "subject": "s",
        "content": [{"type": "text/plain", "value": "c"},
                    *([{"type": "text/html", "value": "<p>c</p>"}] if html else [])]}
    response = requests.post(f"{sandbox.url}{MAIL_PATH}", json=body, timeout=5)
    assert response.status_code == 202
    return response.headers["X-Message-Id"]


def sent_callbacks(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_callbacks", timeout=5).json()["callbacks"]


def wait_for_callbacks(sandbox: SandboxServer, count: int) -> list[dict[str, Any]]:
    """GET /_callbacks once it lists `count` callbacks (each is recorded once answered)."""
    return wait_until(lambda: sent if len(sent := sent_callbacks(sandbox)) >= count else None)


def twilio_callback_url(receiver: Receiver) -> str:
    return f"{receiver.url}/v1/callbacks/twilio?notification_id=n1&span_id=s1"


def test_twilio_status_callbacks_are_signed_for_the_sdk_validator(make_sandbox, receiver):
    sandbox = make_sandbox()
    sid = send_sms(sandbox, twilio_callback_url(receiver))

    received = receiver.wait_for(2)

    # The sandbox's default auth token is Herald's default: the local stack verifies unconfigured.
    validator = RequestValidator(Settings(project="p").twilio_auth_token)
    for request in received:
        url = f"{receiver.url}{request.path}"
        signature = request.headers["X-Twilio-Signature"]
        assert validator.validate(url, request.form(), signature)
        assert not validator.validate(url, {**request.form(), "MessageStatus": "failed"},
                                      signature)
        assert not validator.validate(url.replace("span_id=s1", "span_id=s2"), request.form(),
                                      signature)
    assert [r.path for r in received] == ["/v1/callbacks/twilio?notification_id=n1&span_id=s1"] * 2
    forms = [r.form() for r in received]
    assert [{k: form[k] for k in ("MessageSid", "MessageStatus", "AccountSid", "To", "From")}
            for form in forms] == [
        {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC0123",
         "To": SMS["To"], "From": SMS["From"]} for status in ("sent", "delivered")]
    assert "RawDlrDoneDate" not in forms[0] and len(forms[1]["RawDlrDoneDate"]) == 10


@pytest.mark.parametrize(("outcome", "statuses", "error_code"), [
    ("failed", ["failed"], "30008"),
    ("undelivered", ["sent", "undelivered"], "30003"),
])
def test_twilio_failures_carry_an_error_code(make_sandbox, receiver, outcome, statuses,
                                             error_code):
    sandbox = make_sandbox(twilio={outcome: 1})
    send_sms(sandbox, twilio_callback_url(receiver))

    forms = [r.form() for r in receiver.wait_for(len(statuses))]

    assert [form["MessageStatus"] for form in forms] == statuses
    assert forms[-1]["ErrorCode"] == error_code
    assert all("ErrorCode" not in form for form in forms[:-1])


def test_sendgrid_event_batches_are_signed_for_the_sdk_validator(make_sandbox, receiver):
    sandbox = make_sandbox(sendgrid={"open": 1, "click": 1})
    message_id = send_mail(sandbox, html=True)

    received = receiver.wait_for(4)

    key = requests.get(f"{sandbox.url}/_keys", timeout=5).json()["sendgrid_webhook_public_key"]
    verifier = EventWebhook(key)
    for request in received:
        signature = request.headers["X-Twilio-Email-Event-Webhook-Signature"]
        timestamp = request.headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        assert request.path == "/v1/callbacks/sendgrid"
        assert verifier.verify_signature(request.body.decode(), signature, timestamp)
        assert not verifier.verify_signature(request.body.decode() + " ", signature, timestamp)
        assert not verifier.verify_signature(request.body.decode(), signature,
                                             str(int(timestamp) + 1))
    batches = [json.loads(r.body) for r in received]
    assert [[event["event"] for event in batch] for batch in batches] == [
        [name, name] for name in ("processed", "delivered", "open", "click")]
    events = [event for batch in batches for event in batch]
    assert {event["sg_message_id"].split(".")[0] for event in events} == {message_id}
    assert len({event["sg_event_id"] for event in events}) == 8
    assert all(isinstance(event["timestamp"], int) for event in events)
    by_email = {(e["email"], e.get("notification_id"), e.get("span_id")) for e in events}
    assert by_email == {("a@x.io", "n1", "s1"), ("b@x.io", "shared", "s2")}


@pytest.mark.parametrize(("outcome", "events", "detail"), [
    ("bounce", ["processed", "bounce"], {"status": "5.1.1", "type": "bounce"}),
    ("dropped", ["processed", "dropped"], {"reason": "Bounced Address"}),
    ("deferred", ["processed", "deferred", "delivered"], {}),
])
def test_sendgrid_outcomes(make_sandbox, receiver, outcome, events, detail):
    sandbox = make_sandbox(sendgrid={outcome: 1})
    send_mail(sandbox)

    batches = [json.loads(r.body) for r in receiver.wait_for(len(events))]

    assert [batch[0]["event"] for batch in batches] == events
    outcome_event = next(e for e in batches[1] if e["email"] == "a@x.io")
    assert detail.items() <= outcome_event.items()


def test_duplicate_callbacks_repeat_each_post(make_sandbox, receiver):
    sandbox = make_sandbox(twilio={"duplicate_callbacks": 1})
    send_sms(sandbox, twilio_callback_url(receiver))

    received = receiver.wait_for(4)
    recorded = wait_for_callbacks(sandbox, 4)

    assert Counter(r.body for r in received) == Counter({received[0].body: 2,
                                                         received[2].body: 2})
    assert Counter((c["payload"]["MessageStatus"], c["duplicate"]) for c in recorded) == Counter(
        [("sent", False), ("sent", True), ("delivered", False), ("delivered", True)])


def test_reordered_callbacks_arrive_in_reverse(make_sandbox, receiver):
    sandbox = make_sandbox(twilio={"reordered_callbacks": 1}, sendgrid={"reordered_callbacks": 1})
    send_sms(sandbox, twilio_callback_url(receiver))

    received = receiver.wait_for(2)
    send_mail(sandbox)
    mail = [json.loads(r.body) for r in receiver.wait_for(4)[2:]]

    assert [r.form()["MessageStatus"] for r in received] == ["delivered", "sent"]
    assert [batch[0]["event"] for batch in mail] == ["delivered", "processed"]
    # SendGrid timestamps keep the true order even when the batches do not.
    assert mail[0][0]["timestamp"] >= mail[1][0]["timestamp"]
    assert [c["reordered"] for c in wait_for_callbacks(sandbox, 4)] == [True] * 4


def test_the_callback_record_matches_what_the_receiver_got(make_sandbox, receiver):
    sandbox = make_sandbox()
    send_sms(sandbox, twilio_callback_url(receiver))
    send_mail(sandbox)

    received = receiver.wait_for(4)
    recorded = wait_for_callbacks(sandbox, 4)

    assert {(c["provider"], c["status"], c["duplicate"]) for c in recorded} == {
        ("twilio", 200, False), ("sendgrid", 200, False)}
    assert sorted(json.dumps(c["payload"], sort_keys=True) for c in recorded) == sorted(
        json.dumps(r.form() if "twilio" in r.path else json.loads(r.body), sort_keys=True)
        for r in received)
    assert {c["url"] for c in recorded} == {twilio_callback_url(receiver),
                                            f"{receiver.url}/v1/callbacks/sendgrid"}


def test_only_accepted_messages_with_somewhere_to_report_are_called_back(receiver):
    with SandboxServer(latency_ms=0, config={"twilio": {"rate_limited": 1,
                                                        "callback_delay_ms": 0}}) as sandbox:
        rejected = requests.post(f"{sandbox.url}{TWILIO_PATH}", timeout=5,
                                 data={**SMS, "StatusCallback": twilio_callback_url(receiver)})
        sandbox.configure({"twilio": {"rate_limited": 0}})
        send_sms(sandbox, None)
        send_mail(sandbox)  # no webhook URL configured
        sid = send_sms(sandbox, twilio_callback_url(receiver))

        wait_for_callbacks(sandbox, 2)
        time.sleep(0.1)  # anything scheduled before the last message would have been sent by now

        assert rejected.status_code == 429
        assert [c["payload"]["MessageSid"] for c in sent_callbacks(sandbox)] == [sid, sid]


def test_an_unreachable_receiver_is_recorded_without_a_status():
    with SandboxServer() as gone:
        closed = gone.url
    with SandboxServer(latency_ms=0, config={"twilio": {"callback_delay_ms": 0}}) as sandbox:
        send_sms(sandbox, f"{closed}/v1/callbacks/twilio")

        recorded = wait_for_callbacks(sandbox, 2)

    assert [c["status"] for c in recorded] == [None, None]


def test_plain_text_mail_has_no_opens_or_clicks(make_sandbox, receiver):
    """SendGrid tracks opens with an image and clicks by rewriting HTML links: plain text, which
    is what Herald sends, has neither, whatever the open and click rates."""
    sandbox = make_sandbox(sendgrid={"open": 1, "click": 1})
    send_mail(sandbox)

    received = receiver.wait_for(2)
    time.sleep(4 * STEP_MS / 1000)  # time for an open or a click, were there one

    assert [[e["event"] for e in json.loads(r.body)] for r in receiver.requests] == [
        ["processed", "processed"], ["delivered", "delivered"]]
    assert len(received) == 2


FIXTURES = {"twilio": contract_fixtures.load("twilio", "callbacks"),
            "sendgrid": contract_fixtures.load("sendgrid", "events")}


def documented_fields(provider: str, kind: str) -> set[str]:
    """Every field the documentation fixtures show for one Twilio MessageStatus or one SendGrid
    event type."""
    if provider == "twilio":
        return {name for f in FIXTURES["twilio"].values() if f["kind"] == "status_callback"
                and f["form"]["MessageStatus"] == kind for name in f["form"]}
    return {name for f in FIXTURES["sendgrid"].values() for event in f["events"]
            if event.get("event") == kind for name in event}


@pytest.mark.parametrize("outcome", [None, "undelivered", "failed"])
def test_twilio_callbacks_have_only_documented_fields_and_read_as_documented(
        make_sandbox, receiver, outcome):
    sandbox = make_sandbox(twilio={outcome: 1} if outcome else {})
    send_sms(sandbox, twilio_callback_url(receiver))

    forms = [r.form() for r in receiver.wait_for(1 if outcome == "failed" else 2)]

    for form in forms:
        assert set(form) <= documented_fields("twilio", form["MessageStatus"]), form
        assert status_callbacks.status_callback(form, {}, "2026-11-02T10:00:00.000000Z")


@pytest.mark.parametrize("outcome", [{}, {"bounce": 1}, {"dropped": 1}, {"deferred": 1}])
def test_sendgrid_events_have_only_documented_fields_and_read_as_documented(
        make_sandbox, receiver, outcome):
    sandbox = make_sandbox(sendgrid={**outcome, "open": 1, "click": 1})
    send_mail(sandbox, html=True)
    custom_args = {"notification_id", "span_id"}

    chain = 2 if "bounce" in outcome or "dropped" in outcome else 4 + ("deferred" in outcome)
    events = [e for r in receiver.wait_for(chain) for e in json.loads(r.body)]

    for event in events:
        assert set(event) - custom_args <= documented_fields("sendgrid", event["event"]), event
    batch = event_webhook.read_events(events)
    assert (len(batch.callbacks), batch.invalid, dict(batch.ignored)) == (len(events), 0, {})
