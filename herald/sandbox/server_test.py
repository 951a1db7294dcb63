"""The sandbox over plain HTTP: provider shapes, the ledger, runtime config and the entry point.

providers_test.py covers the same endpoints through the official SDKs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.sandbox import SandboxServer, SendGridSigner

FCM_PATH = "/v1/projects/herald-local/messages:send"
TWILIO_PATH = "/2010-04-01/Accounts/AC0123/Messages.json"
MAIL_PATH = "/v3/mail/send"


@pytest.fixture
def sandbox():
    with SandboxServer(latency_ms=0) as server:
        yield server


def ledger(sandbox: SandboxServer) -> list[dict[str, Any]]:
    response = requests.get(f"{sandbox.url}/_ledger", timeout=5)
    assert response.status_code == 200
    return response.json()["entries"]


def mail(*personalizations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"personalizations": list(personalizations), "from": {"email": "herald@example.com"},
            "subject": "s", "content": [{"type": "text/plain", "value": "c"}], **extra}


def to(*emails: str, **custom_args: str) -> dict[str, Any]:
    return {"to": [{"email": email} for email in emails], "custom_args": custom_args}


def test_health(sandbox):
    assert requests.get(f"{sandbox.url}/_health", timeout=5).json() == {"ok": True}


def test_fcm_accepts_a_token_and_records_the_ids(sandbox):
    response = requests.post(f"{sandbox.url}{FCM_PATH}", timeout=5, json={"message": {
        "token": "tok-1", "data": {"notification_id": "n1", "span_id": "s1"}}})

    assert response.status_code == 200
    name = response.json()["name"]
    assert name.startswith("projects/herald-local/messages/")
    [entry] = ledger(sandbox)
    assert entry["channel"] == "push" and entry["recipient"] == "tok-1"
    assert (entry["notification_id"], entry["span_id"]) == ("n1", "s1")
    assert entry["provider_message_id"] == name
    assert entry["time"].endswith("Z")


def test_the_ledger_from_an_index_serves_only_the_later_entries(sandbox):
    for token in ("tok-a", "tok-b", "tok-c"):
        requests.post(f"{sandbox.url}{FCM_PATH}", timeout=5, json={"message": {"token": token}})

    later = requests.get(f"{sandbox.url}/_ledger/from/1", timeout=5).json()["entries"]

    assert [entry["recipient"] for entry in later] == ["tok-b", "tok-c"]
    assert requests.get(f"{sandbox.url}/_ledger/from/3", timeout=5).json()["entries"] == []


@pytest.mark.parametrize(("path", "message", "status", "grpc_status", "fcm_code"), [
    (FCM_PATH, {"token": "unregistered-1"}, 404, "NOT_FOUND", "UNREGISTERED"),
    (FCM_PATH, {"data": {"notification_id": "n"}}, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    ("/v1/projects/someone-else/messages:send", {"token": "t"}, 403, "PERMISSION_DENIED", None),
])
def test_fcm_errors_use_googles_shape_and_are_not_recorded(
        sandbox, path, message, status, grpc_status, fcm_code):
    response = requests.post(f"{sandbox.url}{path}", json={"message": message}, timeout=5)

    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, grpc_status)
    assert [d["errorCode"] for d in error["details"]] == ([fcm_code] if fcm_code else [])
    assert ledger(sandbox) == []


def test_twilio_creates_a_queued_message_with_callback_ids(sandbox):
    response = requests.post(f"{sandbox.url}{TWILIO_PATH}", timeout=5, data={
        "To": "+15551234567", "From": "+15550000000", "Body": "hi",
        "StatusCallback": "http://api/v1/callbacks/twilio?notification_id=n2&span_id=s2"})

    assert response.status_code == 201
    resource = response.json()
    assert resource["sid"].startswith("SM") and len(resource["sid"]) == 34
    assert (resource["status"], resource["to"], resource["from"], resource["account_sid"]) == (
        "queued", "+15551234567", "+15550000000", "AC0123")
    [entry] = ledger(sandbox)
    assert (entry["channel"], entry["recipient"], entry["provider_message_id"]) == (
        "sms", "+15551234567", resource["sid"])
    assert (entry["notification_id"], entry["span_id"]) == ("n2", "s2")


@pytest.mark.parametrize(("form", "code"), [
    ({"To": "5551234567", "From": "+15550000000", "Body": "x"}, 21211),
    ({"To": "+0551234567", "From": "+15550000000", "Body": "x"}, 21211),
    ({"From": "+15550000000", "Body": "x"}, 21211),
    ({"To": "+15551234567", "Body": "x"}, 21603),
    ({"To": "+15551234567", "From": "+15550000000"}, 21602),
])
def test_twilio_rejects_with_twilio_error_codes(sandbox, form, code):
    response = requests.post(f"{sandbox.url}{TWILIO_PATH}", data=form, timeout=5)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["more_info"].endswith(str(code))
    assert ledger(sandbox) == []


def test_sendgrid_records_every_recipient_of_every_personalization(sandbox):
    body = mail(to("a@x.io", "b@x.io", notification_id="n3", span_id="s3a"),
                to("c@x.io", span_id="s3c"),
                custom_args={"notification_id": "shared", "span_id": "shared-span"})

    response = requests.post(f"{sandbox.url}{MAIL_PATH}", json=body, timeout=5)

    assert response.status_code == 202 and response.content == b""
    message_id = response.headers["X-Message-Id"]
    entries = ledger(sandbox)
    assert [(e["recipient"], e["notification_id"], e["span_id"]) for e in entries] == [
        ("a@x.io", "n3", "s3a"), ("b@x.io", "n3", "s3a"), ("c@x.io", "shared", "s3c")]
    assert {(e["channel"], e["provider_message_id"], e["request_index"]) for e in entries} == {
        ("email", message_id, entries[0]["request_index"])}


def test_request_index_counts_provider_requests(sandbox):
    for email in ("a@x.io", "b@x.io"):
        requests.post(f"{sandbox.url}{MAIL_PATH}", json=mail(to(email)), timeout=5)

    assert [e["request_index"] for e in ledger(sandbox)] == [0, 1]


@pytest.mark.parametrize(("body", "field"), [
    (mail(), "personalizations"),
    ({**mail(to("a@x.io")), "from": None}, "from.email"),
    (mail(to()), "personalizations.0.to"),
    (mail(*[to(f"u{i}@x.io") for i in range(1001)]), "personalizations"),
])
def test_sendgrid_rejects_malformed_mail(sandbox, body, field):
    response = requests.post(f"{sandbox.url}{MAIL_PATH}", json=body, timeout=5)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field and error["message"] and error["help"] is None
    assert ledger(sandbox) == []


def test_sendgrid_accepts_exactly_the_personalization_limit(sandbox):
    body = mail(*[to(f"u{i}@x.io") for i in range(1000)])

    assert requests.post(f"{sandbox.url}{MAIL_PATH}", json=body, timeout=5).status_code == 202
    assert len(ledger(sandbox)) == 1000


def test_config_changes_latency_of_provider_answers(sandbox):
    def timed_send() -> float:
        started = time.perf_counter()
        requests.post(f"{sandbox.url}{MAIL_PATH}", json=mail(to("a@x.io")), timeout=5)
        return time.perf_counter() - started

    # The best of three: a loaded machine can stall any one request past a tight bound.
    fast = min(timed_send() for _ in range(3))
    response = requests.post(f"{sandbox.url}/_config", json={"latency_ms": 300}, timeout=5)

    slow = timed_send()

    assert response.json()["latency_ms"] == 300
    assert fast < 0.3 <= slow  # slow only once configured, by at least the latency


@pytest.mark.parametrize("body", [{"latency_ms": -1}, {"latency_ms": "slow"},
                                  {"latency_ms": True}, {"fault": 1}, []])
def test_config_rejects_bad_settings_and_keeps_the_old_ones(sandbox, body):
    response = requests.post(f"{sandbox.url}/_config", json=body, timeout=5)

    assert response.status_code == 400
    assert sandbox.settings.latency_ms == 0


def test_unknown_routes_are_404_and_not_counted(sandbox):
    assert requests.get(f"{sandbox.url}/v3/mail/send", timeout=5).status_code == 404
    assert requests.post(f"{sandbox.url}/nope", data=b"x", timeout=5).status_code == 404
    requests.post(f"{sandbox.url}{MAIL_PATH}", json=mail(to("a@x.io")), timeout=5)

    assert [e["request_index"] for e in ledger(sandbox)] == [0]


def test_many_concurrent_connections_are_all_answered():
    # Fresh connections per request, all at once: the case the deep listen backlog is for.
    with SandboxServer(latency_ms=20) as sandbox, ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(
            lambda i: requests.post(f"{sandbox.url}{MAIL_PATH}", json=mail(to(f"u{i}@x.io")),
                                    timeout=10).status_code, range(400)))
        recorded = {e["recipient"] for e in ledger(sandbox)}

    assert statuses == [202] * 400
    assert recorded == {f"u{i}@x.io" for i in range(400)}


def test_module_entry_point_prints_its_url_and_serves_with_its_faults(tmp_path):
    key_file = tmp_path / "sendgrid.pem"
    key_file.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    process = subprocess.Popen(
        [sys.executable, "-m", "herald.sandbox", "--port", "0", "--latency-ms", "0",
         "--project", "p1", "--seed", "3", "--faults", '{"twilio": {"permanent": 1}}',
         "--sendgrid-key-file", str(key_file)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        key, _, url = line.partition("=")
        assert key == "HERALD_SANDBOX_URL" and url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        assert requests.get(f"{url}/_health", timeout=5).json() == {"ok": True}
        sent = requests.post(f"{url}/v1/projects/p1/messages:send", timeout=5,
                             data=json.dumps({"message": {"token": "t"}}))
        assert sent.status_code == 200
        sms = requests.post(f"{url}{TWILIO_PATH}", timeout=5,
                            data={"To": "+15551234567", "From": "+15550000000", "Body": "hi"})
        assert (sms.status_code, sms.json()["code"]) == (400, 21610)
        settings = requests.post(f"{url}/_config", json={}, timeout=5).json()
        assert settings["seed"] == 3 and settings["twilio"]["permanent"] == 1
        keys = requests.get(f"{url}/_keys", timeout=5).json()
        assert keys == {"sendgrid_webhook_public_key":
                        SendGridSigner.from_pem(key_file.read_bytes()).public_key}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--faults", "{not json"], "argument --faults: not JSON"),
    (["--faults", "[]"], "argument --faults: must be a JSON object"),
    (["--faults", '{"twilio": {"timeout": 2}}'], "timeout is a rate and must be at most 1"),
])
def test_module_entry_point_rejects_bad_faults(arguments, message):
    finished = subprocess.run([sys.executable, "-m", "herald.sandbox", *arguments],
                              capture_output=True, text=True, timeout=30)

    assert finished.returncode == 2
    assert message in finished.stderr


@pytest.mark.parametrize("label", ["", "has space", "x" * 51, 7])
def test_fcm_refuses_an_analytics_label_outside_fcms_format(sandbox, label):
    response = requests.post(f"{sandbox.url}{FCM_PATH}", timeout=5, json={"message": {
        "token": "tok-1", "fcm_options": {"analytics_label": label}}})

    assert response.status_code == 400
    violation = response.json()["error"]["details"][1]["fieldViolations"][0]
    assert violation["field"] == "message.fcm_options.analytics_label"
    assert ledger(sandbox) == []
