"""Injected faults over HTTP and through the official SDKs: rates, shapes, timeouts, runtime
config."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterator

import pytest
import requests

from herald.contracts import Channel
from herald.providers.base import ErrorClass
from herald.providers.providers_test import GOOD_ADDRESS, make_sender, outgoing
from herald.sandbox import SandboxServer

FCM_PATH = "/v1/projects/herald-local/messages:send"
TWILIO_PATH = "/2010-04-01/Accounts/AC0123/Messages.json"
MAIL_PATH = "/v3/mail/send"
SMS_FORM = {"To": "+15551234567", "From": "+15550000000", "Body": "hi"}
MAIL = {"personalizations": [{"to": [{"email": "a@x.io"}]}], "from": {"email": "h@x.io"},
        "subject": "s", "content": [{"type": "text/plain", "value": "c"}]}
REQUEST = {"fcm": {"json": {"message": {"token": "tok-1"}}}, "twilio": {"data": SMS_FORM},
           "sendgrid": {"json": MAIL}}
PATH = {"fcm": FCM_PATH, "twilio": TWILIO_PATH, "sendgrid": MAIL_PATH}


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(latency_ms=0) as server:
        yield server


def send(sandbox: SandboxServer, provider: str, session: Any = requests,
         timeout: float = 5) -> requests.Response:
    return session.post(f"{sandbox.url}{PATH[provider]}", timeout=timeout, **REQUEST[provider])


def configure(sandbox: SandboxServer, changes: dict[str, Any]) -> requests.Response:
    return requests.post(f"{sandbox.url}/_config", json=changes, timeout=5)


def ledger(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_ledger", timeout=5).json()["entries"]


def test_fault_rates_are_honoured_and_only_successes_are_recorded():
    config = {"seed": 11, "fcm": {"rate_limited": 0.1, "server_error": 0.1, "unavailable": 0.1,
                                  "permanent": 0.1}}
    with SandboxServer(latency_ms=0, config=config) as sandbox, requests.Session() as session:
        statuses = Counter(send(sandbox, "fcm", session).status_code for _ in range(1000))
        recorded = len(ledger(sandbox))

    assert set(statuses) == {200, 400, 429, 500, 503}
    for status in (400, 429, 500, 503):  # 1000 draws at 10%: 4 standard deviations is +-38
        assert 62 <= statuses[status] <= 138, statuses
    assert recorded == statuses[200]


def test_a_seed_reproduces_the_same_faults(sandbox):
    configure(sandbox, {"twilio": {"rate_limited": 0.3, "permanent": 0.3}})

    def run() -> list[int]:
        configure(sandbox, {"seed": 5})
        return [send(sandbox, "twilio").status_code for _ in range(40)]

    first, second = run(), run()

    assert first == second
    assert set(first) == {201, 400, 429}


@pytest.mark.parametrize(("provider", "code"), [
    ("fcm", lambda body: (body["error"]["status"], body["error"]["details"][0]["errorCode"])
     == ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")),
    ("twilio", lambda body: body["code"] == 20429),
    ("sendgrid", lambda body: body["errors"][0]["message"] == "too many requests"),
])
def test_429_says_how_long_to_wait_in_the_providers_shape(sandbox, provider, code):
    configure(sandbox, {provider: {"rate_limited": 1, "retry_after_s": 7}})

    response = send(sandbox, provider)

    assert response.status_code == 429
    if provider == "sendgrid":  # SendGrid's rate-limit headers, never Retry-After
        assert "Retry-After" not in response.headers
        assert 6 <= int(response.headers["X-RateLimit-Reset"]) - time.time() <= 8
        assert response.headers["X-RateLimit-Remaining"] == "0"
    else:
        assert response.headers["Retry-After"] == "7"
    assert code(response.json())
    assert ledger(sandbox) == []


# FCM's 429, 500 and 503 are left out: firebase-admin retries them itself (four times, sleeping
# Retry-After or backing off 0.5 s doubling), so one send takes 4 to 7 s before it fails.
@pytest.mark.parametrize(("channel", "fault", "code", "error_class"), [
    (Channel.PUSH, "permanent", "INVALID_ARGUMENT", ErrorClass.PERMANENT),
    (Channel.PUSH, "configuration", "SENDER_ID_MISMATCH", ErrorClass.CONFIGURATION),
    (Channel.SMS, "rate_limited", "20429", ErrorClass.RATE_LIMITED),
    (Channel.SMS, "server_error", "20500", ErrorClass.TRANSIENT),
    (Channel.SMS, "unavailable", "20503", ErrorClass.TRANSIENT),
    (Channel.SMS, "permanent", "21610", ErrorClass.OPTED_OUT),
    (Channel.SMS, "configuration", "20003", ErrorClass.CONFIGURATION),
    (Channel.EMAIL, "rate_limited", "429", ErrorClass.RATE_LIMITED),
    (Channel.EMAIL, "server_error", "500", ErrorClass.TRANSIENT),
    (Channel.EMAIL, "permanent", "400", ErrorClass.UNREACHABLE),
    (Channel.EMAIL, "configuration", "401", ErrorClass.CONFIGURATION),
])
def test_the_senders_classify_injected_faults(sandbox, channel, fault, code, error_class):
    provider = {Channel.PUSH: "fcm", Channel.SMS: "twilio", Channel.EMAIL: "sendgrid"}[channel]
    configure(sandbox, {provider: {fault: 1}})
    sender = make_sender(channel, sandbox.url)
    try:
        [result] = sender.send([outgoing(channel, GOOD_ADDRESS[channel].format(i=1))])
    finally:
        sender.close()

    assert (result.ok, result.error_code, result.error_class) == (False, code, error_class)
    assert ledger(sandbox) == []


def test_a_timeout_hangs_past_the_client_and_is_not_recorded(sandbox):
    configure(sandbox, {"sendgrid": {"timeout": 1, "timeout_s": 0.5}})

    with pytest.raises(requests.Timeout):
        send(sandbox, "sendgrid", timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(requests.ConnectionError):  # a patient client sees the hang-up
        send(sandbox, "sendgrid", timeout=5)

    assert time.perf_counter() - started >= 0.5
    assert ledger(sandbox) == []


def test_config_changes_faults_at_runtime_knob_by_knob(sandbox):
    assert send(sandbox, "twilio").status_code == 201

    configure(sandbox, {"twilio": {"rate_limited": 1}})
    limited = send(sandbox, "twilio")
    response = configure(sandbox, {"twilio": {"retry_after_s": 9}})
    still_limited = send(sandbox, "twilio")
    other_provider = send(sandbox, "fcm")
    configure(sandbox, {"twilio": {"rate_limited": 0}})

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert response.json()["twilio"]["rate_limited"] == 1
    assert (still_limited.status_code, still_limited.headers["Retry-After"]) == (429, "9")
    assert other_provider.status_code == 200
    assert send(sandbox, "twilio").status_code == 201
    assert len(ledger(sandbox)) == 3


def test_exclusive_rates_may_add_up_to_exactly_one(sandbox):
    response = configure(sandbox, {"sendgrid": {"bounce": 0.1, "dropped": 0.2, "deferred": 0.7}})

    assert response.status_code == 200


@pytest.mark.parametrize("body", [
    {"twilio": {"rate_limited": 1.5}},
    {"twilio": {"rate_limited": 0.6, "timeout": 0.5}},
    {"sendgrid": {"bounce": 0.6, "dropped": 0.6}},
    {"fcm": {"bounce": 0.1}},
    {"fcm": {"duplicate_callbacks": 0.1}},
    {"twilio": {"open": 0.1}},
    {"sendgrid": {"open": -0.1}},
    {"sendgrid": {"retry_after_s": 1.5}},
    {"sendgrid": {"timeout_s": "long"}},
    {"twilio": 1},
    {"seed": "x"},
    {"seed": True},
    {"apns": {}},
])
def test_config_rejects_bad_faults_and_keeps_the_old_settings(sandbox, body):
    before = sandbox.settings

    response = configure(sandbox, body)

    assert response.status_code == 400 and response.json()["error"]
    assert sandbox.settings == before
