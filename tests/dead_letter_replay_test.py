"""A delivery whose provider stays down is parked whole, and `herald dlq replay` sends it, once.

On a stack of its own: Twilio answers every request with 503 until the test "fixes the
cause"; the SMS requests exhaust their retries and are dead-lettered (an event, a row in the
dead_letters table with the whole request, a message on the dead-letter topic). After the fix,
the operator's command replays them: each reaches the provider exactly once, on its original
span, and a second replay finds nothing left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pytest
import requests
from google.cloud import bigquery

from herald.clients import bigquery_client
from herald.dead_letters import DEAD_LETTERS_TABLE
from herald.local import stack
from herald.contracts import Priority
from herald.local.seed import demo_users
from herald.settings import Settings
from herald.workload import send_all

pytestmark = pytest.mark.slow

SEED_USERS = 300  # as `running_stack` seeds
PARKED = 4


def sms_bodies(count: int) -> list[dict[str, Any]]:
    """SMS to users who take SMS about their account."""
    users = [u for u in demo_users(SEED_USERS) if u.document["notification_enabled"]
             and u.document["channels"]["sms"] and u.document["phone"]
             and u.document["categories"]["account"]]
    return [{"userId": user.user_id, "notificationId": f"dlq-{time.time_ns()}-{i}",
             "serviceType": "accounts", "categoryType": "account", "notificationType": "sms",
             "templateType": "password_changed", "priority": "high",
             "notificationInfo": {"title": "Password changed", "content": "Was it you?"}}
            for i, user in enumerate(users[:count])]


def rows(settings: Settings, table: str, traces: list[str]) -> list[dict[str, Any]]:
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", traces)])
    result = bigquery_client(settings).query(
        f"SELECT * FROM `{settings.table(table)}` WHERE trace_id IN UNNEST(@traces)",
        job_config=config).result()
    return [dict(row.items()) for row in result]


def wait_for(what: str, probe: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def herald_cli(local_stack: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "herald", "--state-dir",
                           local_stack["HERALD_STATE_DIR"], *args], cwd=stack.REPO_ROOT,
                          check=True, capture_output=True, text=True).stdout


def ledger_for(local_stack: dict[str, str], notification_ids: set[str]) -> list[dict[str, Any]]:
    entries = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    return [e for e in entries if e["notification_id"] in notification_ids]


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A stack of its own: the replayed sends must not reach the shared stack's ledger, which the
    other end-to-end tests compare with their events and marts."""
    with stack.running(tmp_path_factory.mktemp("replay-state")) as env:
        yield env


def test_a_parked_delivery_is_replayed_once_its_cause_is_fixed(local_stack: dict[str, str]) -> None:
    settings = Settings.from_env(local_stack)
    config = f"{local_stack['HERALD_SANDBOX_URL']}/_config"
    bodies = sms_bodies(PARKED)
    ids = {body["notificationId"] for body in bodies}
    requests.post(config, json={"twilio": {"unavailable": 1.0}}, timeout=10).raise_for_status()
    try:
        traces = [s.trace_id for s in send_all(local_stack["HERALD_API_URL"],
                                               local_stack["HERALD_API_KEY"], bodies)]
        wait_for("the dead letters", lambda: len(rows(settings, DEAD_LETTERS_TABLE, traces)) == PARKED)
    finally:
        requests.post(config, json={"twilio": {"unavailable": 0.0}}, timeout=10).raise_for_status()

    parked = rows(settings, DEAD_LETTERS_TABLE, traces)
    dead_events = [e for e in rows(settings, "events", traces) if e["status"] == "dead_letter"]
    assert {(p["reason"], p["attempts"], p["source_topic"]) for p in parked} == \
        {("retries_exhausted", 6, settings.requests_topic_for(Priority.HIGH))}  # high: its own lane
    assert {p["span_id"] for p in parked} == {e["span_id"] for e in dead_events}
    assert {json.loads(p["data"])["request"]["notificationId"] for p in parked} == ids
    assert ledger_for(local_stack, ids) == []

    assert herald_cli(local_stack, "dlq", "replay").startswith(f"replayed {PARKED} dead letters")
    wait_for("the replayed sends", lambda: len(
        [e for e in rows(settings, "events", traces) if e["status"] == "sent"]) == PARKED)
    sent = ledger_for(local_stack, ids)
    assert sorted(e["span_id"] for e in sent) == sorted(p["span_id"] for p in parked)
    assert herald_cli(local_stack, "dlq", "replay").startswith("replayed 0 dead letters")
    time.sleep(3)  # nothing more may arrive: the replay was taken once
    assert len(ledger_for(local_stack, ids)) == PARKED
