"""End to end on the whole local stack: HTTP -> Pub/Sub -> Beam -> providers -> BigQuery -> dbt.

Expectations are computed here from the seed documents, the request bodies and the sandbox ledger,
never from the pipeline's own planning code, so a pipeline bug cannot hide behind itself.
"""

from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import requests
from google.cloud import bigquery

from herald.clients import bigquery_client, firestore_client
from herald.dbt_project import run_dbt
from herald.local.drain import wait_for_drain
from herald.local.seed import demo_users, expected_deliveries
from herald.settings import Settings
from herald.workload import Sent, make_requests, send_all

pytestmark = pytest.mark.slow

SEED_USERS = 300  # as the `local_stack` fixture seeds
REQUESTS = 800
BULK_RATE = 0.05
"""Bulk requests (`userIds`) whose users share device ids, half with a household sharing a
phone, an email and a device: each delivery still ends once, each address gets one send."""
TERMINAL = {"suppressed", "duplicate", "sent", "failed", "dead_letter"}


@dataclass(frozen=True)
class Run:
    sent: list[Sent]
    events: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    settings: Settings


@pytest.fixture(scope="module")
def run(local_stack: dict[str, str]) -> Run:
    settings = Settings.from_env(local_stack)
    sent = send_all(local_stack["HERALD_API_URL"], local_stack["HERALD_API_KEY"],
                    make_requests(REQUESTS, SEED_USERS, seed=42, bulk_rate=BULK_RATE))
    client = bigquery_client(settings)
    wait_for_drain(client, settings, [s.trace_id for s in sent], timeout_s=600)
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", [s.trace_id for s in sent])])
    rows = client.query(f"SELECT * FROM `{settings.events_table}` "
                        "WHERE trace_id IN UNNEST(@traces)", job_config=config).result()
    events = list({row["event_id"]: dict(row.items()) for row in rows}.values())
    ledger = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    return Run(sent, events, ledger, settings)


def test_every_request_is_accepted_once(run: Run) -> None:
    accepted = collections.Counter(e["trace_id"] for e in run.events if e["status"] == "accepted")
    assert set(accepted) == {s.trace_id for s in run.sent}
    assert set(accepted.values()) == {1}


def test_every_delivery_reaches_exactly_one_terminal_event(run: Run) -> None:
    users = {u.user_id: u for u in demo_users(SEED_USERS)}
    terminal = collections.Counter(e["span_id"] for e in run.events if e["status"] in TERMINAL)
    assert set(terminal.values()) == {1}, "a delivery has more than one terminal event"
    spans_per_trace = collections.Counter(
        e["trace_id"] for e in run.events if e["status"] in TERMINAL)
    for sent in run.sent:
        assert spans_per_trace[sent.trace_id] == expected_deliveries(sent.body, users), sent.body


def test_ledger_and_sent_events_match_one_to_one(run: Run) -> None:
    sent = {e["span_id"]: e for e in run.events if e["status"] == "sent"}
    ledger = collections.Counter(entry["span_id"] for entry in run.ledger)
    assert set(ledger.values()) == {1}
    assert set(ledger) == set(sent)
    for entry in run.ledger:
        assert sent[entry["span_id"]]["provider_message_id"] == entry["provider_message_id"]
        assert sent[entry["span_id"]]["notification_id"] == entry["notification_id"]


def test_opted_out_users_and_disabled_devices_receive_nothing(run: Run) -> None:
    users = {u.user_id: u for u in demo_users(SEED_USERS)}
    owners: dict[str, list] = collections.defaultdict(list)  # address or token -> (user, device)
    for user in users.values():
        for device in user.devices.values():
            owners[device["token"]].append((user, device))
        for field in ("email", "phone"):
            if user.document[field]:
                owners[user.document[field]].append((user, None))
    bodies = {s.body["notificationId"]: s.body for s in run.sent}
    assert any("userIds" in body for body in bodies.values()), "the workload has no bulk request"
    for entry in run.ledger:
        body = bodies[entry["notification_id"]]
        audience = body.get("userIds") or [body["userId"]]
        # A household shares the address: one of the request's users who own it took it.
        takers = [(user, device) for user, device in owners[entry["recipient"]]
                  if user.user_id in audience]
        assert takers, entry
        assert any((device is None or device["notification_enabled"])
                   and user.document["notification_enabled"]
                   and user.document["categories"][body["categoryType"]]
                   and user.document["channels"][body["notificationType"]]
                   for user, device in takers), entry
        assert not entry["recipient"].startswith("unregistered-"), entry
    suppressed = collections.Counter(e["reason"] for e in run.events if e["status"] == "suppressed")
    assert {"user_opted_out", "category_opted_out", "channel_opted_out",
            "device_disabled"} <= set(suppressed), "the workload no longer covers every opt-out"


def test_duplicates_are_sent_once(run: Run) -> None:
    traces: dict[str, set[str]] = collections.defaultdict(set)
    for sent in run.sent:
        traces[sent.body["notificationId"]].add(sent.trace_id)
    repeats = collections.Counter(s.body["notificationId"] for s in run.sent)
    assert any(count > 1 for count in repeats.values()), "the workload has no duplicates"
    # A sender's retry is answered at the edge with the original response (Idempotency-Key or
    # notificationId), so it is one request; the pipeline's dedupe is the second line.
    assert all(len(ids) == 1 for ids in traces.values())
    sends = collections.Counter((e["notification_id"], e["channel"], e["recipient"])
                                for e in run.ledger)
    assert set(sends.values()) == {1}


def test_marts_equal_counts_from_the_ledger(run: Run, local_stack: dict[str, str]) -> None:
    run_dbt(["build"], env={**os.environ, **local_stack})
    client = bigquery_client(run.settings)
    dataset = f"{run.settings.project}.{run.settings.dataset}"
    per_channel = collections.Counter(entry["channel"] for entry in run.ledger)
    rates = {row["channel"]: row["sent"] for row in client.query(
        f"SELECT channel, SUM(sent) AS sent FROM `{dataset}.delivery_rates_daily` GROUP BY 1").result()}
    latency = {row["channel"]: row["sent"] for row in client.query(
        f"SELECT channel, sent FROM `{dataset}.send_latency`").result()}
    assert rates == dict(per_channel)
    assert latency == dict(per_channel)


def test_second_up_refuses_while_a_stack_runs(local_stack: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "herald", "--state-dir",
                             local_stack["HERALD_STATE_DIR"], "local", "up"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_unregistered_tokens_disable_their_device(run: Run) -> None:
    failed = {(e["user_id"], e["device_id"]) for e in run.events
              if e["status"] == "failed" and e["provider_code"] == "UNREGISTERED"}
    assert failed, "the workload no longer reaches an unregistered token"
    client = firestore_client(run.settings)
    for user_id, device_id in failed:
        device = client.collection("users").document(user_id).collection("devices") \
            .document(device_id).get().to_dict()
        assert device["notification_enabled"] is False
        assert device["disabled_reason"] == "UNREGISTERED"


# Issue 4's proof: the marts against figures computed here from the sandbox's own records. The
# provider vocabularies and the precedence rule are written out again on purpose (as the product
# states them), not imported from the provider packages or the dbt project.
TWILIO_TO_HERALD = {"sent": "provider_accepted", "delivered": "delivered",
                    "undelivered": "undelivered", "failed": "undelivered", "read": "opened"}
SENDGRID_TO_HERALD = {"processed": "provider_accepted", "delivered": "delivered",
                      "bounce": "bounced", "dropped": "dropped", "deferred": "deferred",
                      "open": "opened", "click": "clicked"}
FINAL_RANK = {"sent": 1, "delivered": 2, "undelivered": 3, "bounced": 4, "dropped": 5,
              "opened": 6, "clicked": 6}  # an open or click proves delivery, whatever came after


def callback_statuses(local_stack: dict[str, str]) -> dict[str, set[str]]:
    """span -> Herald statuses of every callback the sandbox delivered (2xx from the function)."""
    log = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_callbacks", timeout=10).json()
    statuses: dict[str, set[str]] = collections.defaultdict(set)
    for entry in log["callbacks"]:
        if not entry["status"] or not 200 <= entry["status"] < 300:
            continue
        if entry["provider"] == "twilio":
            # An incoming SMS the sandbox delivered (POST /_inbound/twilio) has no MessageStatus.
            status = TWILIO_TO_HERALD.get(entry["payload"].get("MessageStatus"))
            if status:
                query = urllib.parse.urlsplit(entry["url"]).query
                statuses[dict(urllib.parse.parse_qsl(query))["span_id"]].add(status)
        elif entry["provider"] == "sendgrid":  # not the app's push receipts (provider "app")
            for event in entry["payload"]:
                if SENDGRID_TO_HERALD.get(event["event"]):
                    statuses[event["span_id"]].add(SENDGRID_TO_HERALD[event["event"]])
    return statuses


def nearest_rank(values: list[float], q: float) -> tuple[float, float]:
    """The q-quantile's neighbours by nearest rank: percentile definitions differ by one rank."""
    ordered = sorted(values)
    k = max(1, math.ceil(q * len(ordered)))
    return ordered[max(k - 2, 0)], ordered[min(k, len(ordered) - 1)]


def test_marts_match_the_ledger_and_callback_log(run: Run, local_stack: dict[str, str]) -> None:
    client = bigquery_client(run.settings)
    sent_spans = {entry["span_id"]: entry for entry in run.ledger}
    deadline = time.monotonic() + 180
    while True:  # callbacks trail the sends: wait until every delivered one is an event
        statuses = callback_statuses(local_stack)
        expected = {(span, status) for span, seen in statuses.items()
                    if span in sent_spans for status in seen}
        landed = {(row["span_id"], row["status"]) for row in client.query(
            f"SELECT DISTINCT span_id, status FROM `{run.settings.events_table}` "
            "WHERE provider_message_id IS NOT NULL AND status NOT IN ('sent')").result()}
        settled = bool(expected) and expected <= landed
        if settled:
            run_dbt(["build"], env={**os.environ, **local_stack})
            # The figures below come from `statuses`, the marts from what had landed by the
            # build: the same callbacks only if no other was delivered in between.
            settled = callback_statuses(local_stack) == statuses
        if settled or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert expected <= landed, f"{len(expected - landed)} callbacks never became events"
    assert settled, "no callbacks, or callbacks still being delivered, after 180 s"

    final: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    opened: collections.Counter = collections.Counter()
    clicked: collections.Counter = collections.Counter()
    for span, entry in sent_spans.items():
        seen = statuses.get(span, set()) | {"sent"}
        top = max(seen, key=lambda status: FINAL_RANK.get(status, 0))
        final[entry["channel"]]["delivered" if top in ("opened", "clicked") else top] += 1
        opened[entry["channel"]] += bool(seen & {"opened", "clicked"})
        clicked[entry["channel"]] += "clicked" in seen
    assert sum(final["email"][s] for s in ("bounced", "dropped")) > 0, "no email failed to deliver"
    # Herald's email is plain text, in which SendGrid can track neither opens nor clicks.
    assert opened["email"] == 0 and clicked["email"] == 0

    dataset = f"{run.settings.project}.{run.settings.dataset}"
    outcomes = {row["channel"]: row for row in client.query(
        f"SELECT channel, SUM(sent) sent, SUM(delivered) delivered, SUM(undelivered) undelivered, "
        f"SUM(bounced) bounced, SUM(dropped) dropped FROM `{dataset}.delivery_outcomes_daily` "
        "GROUP BY channel").result()}
    funnel = {row["channel"]: row for row in client.query(
        f"SELECT channel, SUM(opened) opened, SUM(clicked) clicked "
        f"FROM `{dataset}.delivery_funnel_daily` GROUP BY channel").result()}
    for channel in ("sms", "email"):
        for status in ("delivered", "undelivered", "bounced", "dropped"):
            assert outcomes[channel][status] == final[channel][status], (channel, status)
        assert funnel[channel]["opened"] == opened[channel], channel
        assert funnel[channel]["clicked"] == clicked[channel], channel

    # The mart's latency ends at the `sent` event (when the provider's answer came back): never
    # before the ledger saw the send, never after the event Herald wrote.
    accepted_at = {e["trace_id"]: e["accepted_at"] for e in run.events if e["status"] == "accepted"}
    sent_event = {e["span_id"]: e for e in run.events if e["status"] == "sent"}
    handed_ms: dict[str, list[float]] = collections.defaultdict(list)
    recorded_ms: dict[str, list[float]] = collections.defaultdict(list)
    for span, entry in sent_spans.items():
        handed = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        accepted = accepted_at[sent_event[span]["trace_id"]]
        handed_ms[entry["channel"]].append((handed - accepted).total_seconds() * 1000)
        recorded_ms[entry["channel"]].append(
            (sent_event[span]["event_ts"] - accepted).total_seconds() * 1000)
    marts = {row["channel"]: row for row in client.query(
        f"SELECT * FROM `{dataset}.send_latency`").result()}
    for channel, values in handed_ms.items():
        for q, column in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            low, high = nearest_rank(values, q)[0], nearest_rank(recorded_ms[channel], q)[1]
            measured = marts[channel][f"{column}_due_to_sent_ms"]
            assert low * 0.99 - 5 <= measured <= high * 1.01 + 5, (channel, column, low, measured, high)


def _settled(read, timeout_s: float = 120.0, quiet_s: float = 3.0):
    """`read()` once it has stopped changing for `quiet_s` (outcomes trail the sends)."""
    deadline = time.monotonic() + timeout_s
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "still changing"
        time.sleep(0.5)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_push_marts_and_status_api_match_the_sandboxs_export_and_receipts(
        run: Run, local_stack: dict[str, str]) -> None:
    """Push delivery from both sources: the marts count exactly the Android pushes the sandbox's
    FCM export reported delivered and the pushes whose app posted a receipt Herald took (204);
    and the status API shows each delivery of a bulk and of a single request as the marts do."""
    sandbox = local_stack["HERALD_SANDBOX_URL"]
    sent_pushes = {e["span_id"]: e for e in run.events
                   if e["status"] == "sent" and e["channel"] == "push"}
    span_of = {e["provider_message_id"].rpartition("/messages/")[2]: span
               for span, e in sent_pushes.items()}

    def outcomes() -> tuple[set[str], dict[str, set[str]]]:
        rows = requests.get(f"{sandbox}/_fcm_export", timeout=10).json()["rows"]
        fcm = {span_of[row["message_id"]] for row in rows
               if row["event"] == "MESSAGE_DELIVERED" and row["message_id"] in span_of}
        receipts: dict[str, set[str]] = collections.defaultdict(set)
        settings = Settings.from_env(local_stack)
        for entry in requests.get(f"{sandbox}/_callbacks", timeout=10).json()["callbacks"]:
            if entry["provider"] == "app" and entry["status"] == 204:
                receipts[settings.receipts.verify(entry["payload"]["token"])].add(
                    entry["payload"]["event"])
        return fcm, dict(receipts)

    fcm, receipts = _settled(outcomes)
    assert fcm and receipts, "the sandbox reported no push outcomes"
    client = bigquery_client(run.settings)
    expected_events = {(span, "delivered" if event == "received" else event)
                       for span, events in receipts.items() for event in events}

    def landed() -> set[tuple[str, str]]:
        return {(row["span_id"], row["status"]) for row in client.query(
            f"SELECT DISTINCT span_id, status FROM `{run.settings.events_table}` "
            "WHERE provider = 'fcm' AND status IN ('delivered', 'opened')").result()}
    deadline = time.monotonic() + 120
    while not expected_events <= landed():
        assert time.monotonic() < deadline, "receipts never became events"
        time.sleep(1)
    run_dbt(["build"], env={**os.environ, **local_stack})

    platform = {span: e["platform"] for span, e in sent_pushes.items()}
    expected: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for span, p in platform.items():
        expected[p]["sent"] += 1
        expected[p]["delivered"] += span in fcm or span in receipts
        expected[p]["delivered_fcm_export"] += span in fcm
        expected[p]["delivered_app_receipt"] += span in receipts
        expected[p]["opened"] += "opened" in receipts.get(span, set())
    dataset = f"{run.settings.project}.{run.settings.dataset}"
    marts = {row["platform"]: {k: row[k] for k in ("sent", "delivered", "delivered_fcm_export",
                                                    "delivered_app_receipt", "opened")}
             for row in client.query(
                 f"SELECT platform, SUM(sent) sent, SUM(delivered) delivered, "
                 f"SUM(delivered_fcm_export) delivered_fcm_export, "
                 f"SUM(delivered_app_receipt) delivered_app_receipt, SUM(opened) opened "
                 f"FROM `{dataset}.push_delivery_daily` GROUP BY platform").result()}
    assert marts == {p: dict(counts) for p, counts in expected.items()}
    assert marts["android"]["delivered_fcm_export"] > 0 and marts["ios"]["delivered_app_receipt"] > 0

    # The status API: a bulk request and a single one, as int_deliveries has them.
    final = {row["span_id"]: (row["notification_id"], row["final_status"]) for row in client.query(
        f"SELECT span_id, notification_id, final_status FROM `{dataset}.int_deliveries` "
        "WHERE channel = 'push'").result()}
    by_notification: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for span, (notification, status) in final.items():
        by_notification[notification][span] = status
    bulk = next(n for n, spans in by_notification.items() if len(spans) > 3)
    single = next(n for n, spans in by_notification.items()
                  if len(spans) == 1 and "delivered" in spans.values())
    key = {"Authorization": f"Bearer {local_stack['HERALD_API_KEY']}"}
    for notification in (bulk, single):
        answer = requests.get(f"{local_stack['HERALD_API_URL']}/v1/notifications/"
                              f"{urllib.parse.quote(notification, safe='')}", headers=key,
                              timeout=10)
        assert answer.status_code == 200, answer.text
        shown = {d["deliveryId"]: d["status"] for d in answer.json()["deliveries"]}
        assert shown == by_notification[notification], notification
