"""The providers as they document themselves, end to end on a local stack of its own, the sandbox
configured to answer the way the examples of issue 10 do:

- one bad address in a bulk email of 1,000 fails alone, the other 999 are sent once;
- a push FCM rate-limits with `Retry-After: 60` is deferred (a `deferred` event with `not_before`,
  an outbox entry; no worker thread waits, herald/providers/retry_test.py) and sent once, after the
  minute, by the stack's scheduled outbox replay, with nobody typing a command;
- SENDER_ID_MISMATCH parks the push and disables no device;
- Twilio 21610 records the opt-out, and the next SMS to that user is suppressed without a call to
  the provider (the sandbox ledger shows none);
- a push over 4,096 bytes is a 400 at the edge.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import requests
from google.cloud import bigquery

from herald.clients import bigquery_client, firestore_client
from herald.local import stack
from herald.settings import Settings
from herald.workload import send_all

pytestmark = pytest.mark.slow

RETRY_AFTER_S = 60


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A stack of its own: its faults and deferred sends must not reach the shared stack."""
    with stack.running(tmp_path_factory.mktemp("providers-state"), seed_users=0) as env:
        yield env


@pytest.fixture(scope="module")
def settings(local_stack: dict[str, str]) -> Settings:
    return Settings.from_env(local_stack)


def configure(local_stack: dict[str, str], changes: dict[str, Any]) -> None:
    requests.post(f"{local_stack['HERALD_SANDBOX_URL']}/_config", json=changes,
                  timeout=10).raise_for_status()


def user(settings: Settings, *, devices: int = 0, **fields: Any) -> str:
    """A user of this test, every switch on, with `devices` push devices."""
    user_id = f"prov-{uuid.uuid4().hex[:10]}"
    ref = firestore_client(settings).collection("users").document(user_id)
    ref.set({"notification_enabled": True, "categories": {}, "channels": {}, **fields})
    for index in range(devices):
        ref.collection("devices").document(f"d{index}").set(
            {"platform": "android", "token": f"tok-{user_id}-{index}", "notification_enabled": True})
    return user_id


def body(channel: str, **fields: Any) -> dict[str, Any]:
    return {"notificationId": f"prov-{uuid.uuid4().hex}", "serviceType": "orders",
            "categoryType": "delivery", "notificationType": channel, "templateType": "t",
            "priority": "high", "notificationInfo": {"title": "Parcel", "content": "On its way"},
            **fields}


def post(local_stack: dict[str, str], bodies: list[dict[str, Any]]) -> list[str]:
    return [s.trace_id for s in send_all(local_stack["HERALD_API_URL"],
                                         local_stack["HERALD_API_KEY"], bodies)]


def events(settings: Settings, traces: list[str]) -> list[dict[str, Any]]:
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", traces)])
    rows = bigquery_client(settings).query(
        f"SELECT * FROM `{settings.events_table}` WHERE trace_id IN UNNEST(@traces)",
        job_config=config).result()
    return list({row["event_id"]: dict(row.items()) for row in rows}.values())


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)
    return found


def with_status(settings: Settings, traces: list[str], status: str,
                count: int = 1) -> Callable[[], list[dict[str, Any]]]:
    def probe() -> list[dict[str, Any]]:
        found = [e for e in events(settings, traces) if e["status"] == status]
        return found if len(found) >= count else []
    return probe


def ledger_for(local_stack: dict[str, str], notification_ids: set[str]) -> list[dict[str, Any]]:
    entries = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    return [e for e in entries if e["notification_id"] in notification_ids]


def test_an_oversized_push_is_a_400_at_the_edge(local_stack: dict[str, str]) -> None:
    oversized = body("push", userId="anyone",
                     notificationInfo={"title": "Parcel", "content": "x" * 4100})
    response = requests.post(f"{local_stack['HERALD_API_URL']}/v1/notifications", json=oversized,
                             headers={"Authorization": f"Bearer {local_stack['HERALD_API_KEY']}"},
                             timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "notificationInfo"


def test_one_bad_address_in_a_bulk_email_of_1000_fails_alone(local_stack, settings) -> None:
    audience = [user(settings, email=f"{i}@example.com") for i in range(999)]
    bad = user(settings, email="bad@invalid")  # Herald takes it; SendGrid refuses it
    audience.insert(500, bad)
    request = body("email", userIds=audience, priority="normal")
    traces = post(local_stack, [request])

    wait_for("1,000 terminal events", lambda: len(
        [e for e in events(settings, traces) if e["status"] in ("sent", "failed")]) == 1000)
    seen = events(settings, traces)
    failed = [e for e in seen if e["status"] == "failed"]
    assert [(e["user_id"], e["provider_code"]) for e in failed] == [(bad, "400")]
    ledger = ledger_for(local_stack, {request["notificationId"]})
    assert len(ledger) == 999 and len({e["span_id"] for e in ledger}) == 999  # each once


def test_a_provider_wait_is_deferred_then_sent_once(local_stack, settings) -> None:
    push_user = user(settings, devices=1)
    request = body("push", userId=push_user)
    configure(local_stack, {"fcm": {"rate_limited": 1, "retry_after_s": RETRY_AFTER_S}})
    try:
        traces = post(local_stack, [request])
        [deferred] = wait_for("the deferred event", with_status(settings, traces, "deferred"))
    finally:
        configure(local_stack, {"fcm": {"rate_limited": 0}})
    assert (deferred["reason"], deferred["provider_code"]) == ("provider_wait", "QUOTA_EXCEEDED")
    waited = (deferred["not_before"] - deferred["event_ts"]).total_seconds()
    assert RETRY_AFTER_S - 1 <= waited <= RETRY_AFTER_S + 2
    assert ledger_for(local_stack, {request["notificationId"]}) == []

    [sent] = wait_for("the deferred push sent", with_status(settings, traces, "sent"))
    assert sent["event_ts"] >= deferred["not_before"]
    assert [e["span_id"] for e in ledger_for(local_stack, {request["notificationId"]})] == [
        deferred["span_id"]]
    assert not [e for e in events(settings, traces) if e["status"] == "dead_letter"]


def test_sender_id_mismatch_disables_no_device(local_stack, settings) -> None:
    push_user = user(settings, devices=2)
    configure(local_stack, {"fcm": {"configuration": 1}})
    try:
        traces = post(local_stack, [body("push", userId=push_user)])
        parked = wait_for("the parked pushes", with_status(settings, traces, "dead_letter", 2))
    finally:
        configure(local_stack, {"fcm": {"configuration": 0}})
    assert {(e["reason"], e["provider_code"]) for e in parked} == {
        ("provider_configuration", "SENDER_ID_MISMATCH")}
    devices = firestore_client(settings).collection("users").document(push_user) \
        .collection("devices").stream()
    assert [d.to_dict()["notification_enabled"] for d in devices] == [True, True]


def test_a_twilio_opt_out_suppresses_the_next_sms_without_a_provider_call(local_stack,
                                                                          settings) -> None:
    sms_user = user(settings, phone="+15557770001")
    first = body("sms", userId=sms_user)
    configure(local_stack, {"twilio": {"permanent": 1}})  # the sandbox's 21610
    try:
        traces = post(local_stack, [first])
        [failed] = wait_for("the opted-out SMS", with_status(settings, traces, "failed"))
    finally:
        configure(local_stack, {"twilio": {"permanent": 0}})
    assert (failed["reason"], failed["provider_code"]) == ("provider_opted_out", "21610")
    opt_out = firestore_client(settings).collection("users").document(sms_user).get() \
        .to_dict()["provider_opt_outs"]["sms"]
    assert (opt_out["source"], opt_out["reason"]) == ("twilio", "21610")

    second = body("sms", userId=sms_user)
    later = post(local_stack, [second])
    [suppressed] = wait_for("the suppressed SMS", with_status(settings, later, "suppressed"))
    assert suppressed["reason"] == "provider_opted_out"
    # the ledger records every SMS the sandbox took: the second, sent with no fault, would be
    assert ledger_for(local_stack, {first["notificationId"], second["notificationId"]}) == []


def opt_out_of(settings: Settings, user_id: str, channel: str) -> dict[str, Any] | None:
    """The provider opt-out recorded on the user for `channel`, if any."""
    document = firestore_client(settings).collection("users").document(user_id).get()
    return (document.to_dict().get("provider_opt_outs") or {}).get(channel)


def assert_suppressed_without_a_call(local_stack: dict[str, str], settings: Settings,
                                     channel: str, user_id: str) -> None:
    """A notification to the user on `channel` ends suppressed as provider_opted_out, and the
    provider never saw it."""
    request = body(channel, userId=user_id)
    traces = post(local_stack, [request])
    [suppressed] = wait_for(f"the suppressed {channel}",
                            with_status(settings, traces, "suppressed"))
    assert suppressed["reason"] == "provider_opted_out"
    assert ledger_for(local_stack, {request["notificationId"]}) == []


def test_a_stop_reply_suppresses_the_next_sms_until_start(local_stack, settings) -> None:
    """The recipient texts STOP: Twilio's incoming message webhook (the sandbox plays it, signed)
    reaches the function, the callbacks pipeline records the opt-out on the user with that phone,
    and Herald's next SMS to them is suppressed before any provider call; START lifts it."""
    phone = "+15557770002"
    sms_user = user(settings, phone=phone)
    answer = requests.post(f"{local_stack['HERALD_SANDBOX_URL']}/_inbound/twilio", timeout=30,
                           json={"from": phone, "body": "Stop"})
    assert answer.json() == {"status": 204}

    def recorded() -> dict[str, Any] | None:
        return opt_out_of(settings, sms_user, "sms")

    opt_out = wait_for("the STOP recorded on the user", recorded, timeout_s=120)
    assert (opt_out["source"], opt_out["reason"]) == ("twilio", "STOP")

    assert_suppressed_without_a_call(local_stack, settings, "sms", sms_user)
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("user", "STRING", sms_user)])
    [opted_out] = [dict(row.items()) for row in bigquery_client(settings).query(
        f"SELECT * FROM `{settings.events_table}` WHERE status = 'opted_out' AND user_id = @user",
        job_config=config).result()]
    assert (opted_out["channel"], opted_out["provider"], opted_out["reason"]) == (
        "sms", "twilio", "STOP")
    assert opted_out["recipient_hash"] and phone not in repr(opted_out)

    # START lifts it: the next SMS goes out.
    answer = requests.post(f"{local_stack['HERALD_SANDBOX_URL']}/_inbound/twilio", timeout=30,
                           json={"from": phone, "body": "START"})
    assert answer.json() == {"status": 204}
    wait_for("the opt-out lifted", lambda: recorded() is None, timeout_s=120)
    again = body("sms", userId=sms_user)
    wait_for("the SMS sent again", with_status(settings, post(local_stack, [again]), "sent"))
    assert len(ledger_for(local_stack, {again["notificationId"]})) == 1


def test_a_spam_report_suppresses_the_next_email_without_a_provider_call(local_stack,
                                                                         settings) -> None:
    """SendGrid reports the recipient marked Herald's email as spam (a signed Event Webhook
    spamreport, with Herald's custom args): the address's user gets the email opt-out, and the
    next email to them is suppressed before any provider call."""
    address = f"spam-{uuid.uuid4().hex[:8]}@example.com"
    email_user = user(settings, email=address)
    first = body("email", userId=email_user)
    configure(local_stack, {"sendgrid": {"bounce": 0, "dropped": 0, "deferred": 0,
                                         "spamreport": 1}})
    try:
        post(local_stack, [first])

        opt_out = wait_for("the spam report recorded on the user",
                           lambda: opt_out_of(settings, email_user, "email"), timeout_s=120)
    finally:
        configure(local_stack, {"sendgrid": {**stack.SANDBOX_OUTCOMES["sendgrid"],
                                             "spamreport": 0}})
    assert (opt_out["source"], opt_out["reason"]) == ("sendgrid", "spamreport")

    assert_suppressed_without_a_call(local_stack, settings, "email", email_user)
