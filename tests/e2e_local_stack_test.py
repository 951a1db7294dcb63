"""End to end on the whole local stack: HTTP -> Pub/Sub -> Beam -> providers -> BigQuery -> dbt.

Expectations are computed here from the seed documents, the request bodies and the sandbox ledger,
never from the pipeline's own planning code, so a pipeline bug cannot hide behind itself.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from google.cloud import bigquery

from herald.clients import bigquery_client, firestore_client
from herald.dbt_project import run_dbt
from herald.local.drain import wait_for_drain
from herald.local.seed import demo_users
from herald.settings import Settings
from herald.workload import Sent, make_requests, send_all

pytestmark = pytest.mark.slow

SEED_USERS = 300  # as the `local_stack` fixture seeds
REQUESTS = 800
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
                    make_requests(REQUESTS, SEED_USERS, seed=42))
    client = bigquery_client(settings)
    wait_for_drain(client, settings, [s.trace_id for s in sent], timeout_s=600)
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", [s.trace_id for s in sent])])
    rows = client.query(f"SELECT * FROM `{settings.events_table}` "
                        "WHERE trace_id IN UNNEST(@traces)", job_config=config).result()
    events = list({row["event_id"]: dict(row.items()) for row in rows}.values())
    ledger = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    return Run(sent, events, ledger, settings)


def expected_deliveries(body: dict[str, Any], users: dict[str, Any]) -> int:
    user = users.get(body["userId"])
    if user is None or body["notificationType"] != "push":
        return 1
    return len(user.devices)


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
    by_token = {d["token"]: (u, d) for u in users.values() for d in u.devices.values()}
    by_address = {**{u.document["email"]: u for u in users.values()},
                  **{u.document["phone"]: u for u in users.values() if u.document["phone"]}}
    bodies = {s.body["notificationId"]: s.body for s in run.sent}
    for entry in run.ledger:
        body = bodies[entry["notification_id"]]
        if entry["channel"] == "push":
            user, device = by_token[entry["recipient"]]
            assert device["notification_enabled"], entry
            assert not entry["recipient"].startswith("unregistered-"), entry
        else:
            user = by_address[entry["recipient"]]
        assert user.user_id == body["userId"]
        assert user.document["notification_enabled"], entry
        assert user.document["categories"][body["categoryType"]], entry
        assert user.document["channels"][body["notificationType"]], entry
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
