"""Time and priority end to end on a private local stack (issue 12).

Priority isolation: with the routine pipeline process stopped (SIGSTOP), a high-priority request
still reaches its provider, through its own topic and pipeline, while a normal one waits until
the routine pipeline runs again.

Scheduled sends: HTTP with a sendTime a few seconds ahead -> held in the Firestore outbox -> the delivery pipeline killed and restarted by its
supervisor during the wait -> the stack's scheduled outbox replay releases each request when due
-> the provider sandbox. Judged from the sandbox ledger and BigQuery: each request reaches its
provider once, no earlier than its sendTime and within 10 s after it; the one canceled with
DELETE never does and has its `canceled` event; a DELETE after the send is 409."""

from __future__ import annotations

import collections
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests
from google.cloud import bigquery

from herald.bench.analysis import receives_everything
from herald.clients import bigquery_client
from herald.local import stack
from herald.local.seed import demo_users
from herald.settings import Settings
from herald.workload import send_all

pytestmark = pytest.mark.slow

AHEAD_S = 25.0
"""Long enough to see every request held and to kill and restart the pipeline in the wait."""
BOUND_S = 10.0


@pytest.fixture(scope="module")
def timing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    state_dir = tmp_path_factory.mktemp("timing-state")
    with stack.running(state_dir, HERALD_RECONCILE_EVERY_S="0") as env:
        yield state_dir, env


def ledger_ids(env: dict[str, str]) -> set[str]:
    """notificationIds that reached a provider."""
    entries = requests.get(f"{env['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    return {entry["notification_id"] for entry in entries}


def test_high_priority_is_delivered_while_the_routine_pipeline_is_stopped(timing_stack) -> None:
    state_dir, env = timing_stack
    user = next(user.user_id for user in demo_users(300) if receives_everything(user))
    bodies = [{"userId": user, "notificationId": f"lane-{priority}", "serviceType": "alerts",
               "categoryType": "security", "notificationType": "sms", "templateType": "login_alert",
               "priority": priority, "notificationInfo": {"title": "Alert", "content": priority}}
              for priority in ("normal", "high")]
    with stack.frozen(state_dir, "pipeline"):
        send_all(env["HERALD_API_URL"], env["HERALD_API_KEY"], bodies)
        deadline = time.monotonic() + 60
        while "lane-high" not in ledger_ids(env):
            assert time.monotonic() < deadline, "the urgent lane did not deliver"
            time.sleep(0.5)
        assert "lane-normal" not in ledger_ids(env)  # its pipeline is stopped
    deadline = time.monotonic() + 60
    while "lane-normal" not in ledger_ids(env):
        assert time.monotonic() < deadline, "the routine lane did not resume"
        time.sleep(0.5)


def events_of(settings: Settings, traces: list[str]) -> list[dict]:
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", traces)])
    rows = bigquery_client(settings).query(
        f"SELECT * FROM `{settings.events_table}` WHERE trace_id IN UNNEST(@traces)",
        job_config=config).result()
    return list({row["event_id"]: dict(row.items()) for row in rows}.values())


def test_scheduled_sends_wait_for_their_time_survive_a_restart_and_cancel(timing_stack) -> None:
    state_dir, env = timing_stack
    settings = Settings.from_env(env)
    api, auth = env["HERALD_API_URL"], {"Authorization": f"Bearer {env['HERALD_API_KEY']}"}
    users = [user.user_id for user in demo_users(300) if receives_everything(user)][:6]
    send_at = datetime.now(timezone.utc) + timedelta(seconds=AHEAD_S)
    bodies = [{"userId": user, "notificationId": f"sched-{index}", "serviceType": "orders",
               "categoryType": "delivery", "notificationType": ("sms", "email")[index % 2],
               "templateType": "order_shipped", "priority": "normal",
               "notificationInfo": {"title": "Shipped", "content": f"Parcel {index}"},
               "metadata": {"sendTime": send_at.isoformat()}}
              for index, user in enumerate(users)]
    sent = send_all(api, env["HERALD_API_KEY"], bodies)
    traces = [s.trace_id for s in sent]
    deadline = time.monotonic() + AHEAD_S / 2
    while not {e["trace_id"] for e in events_of(settings, traces)
               if e["status"] == "scheduled"} >= set(traces[1:]):
        assert time.monotonic() < deadline, "the pipeline did not hold every scheduled request"
        time.sleep(1)
    stack.crash_pipeline(state_dir)  # the holds are in Firestore, not in the process
    # Canceled after the crash: the DirectRunner acknowledges what it reads, so a cancel notice
    # read by the process being killed would be lost with it (Dataflow checkpoints first).
    canceled = requests.delete(f"{api}/v1/notifications/sched-0", headers=auth, timeout=10)
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")
    assert datetime.now(timezone.utc) < send_at, "the restart took the whole wait"

    time.sleep(max(0.0, (send_at - datetime.now(timezone.utc)).total_seconds()) + BOUND_S + 2)
    ledger = requests.get(f"{env['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    reached = collections.defaultdict(list)
    for entry in (entry for entry in ledger if entry["notification_id"].startswith("sched-")):
        reached[entry["notification_id"]].append(
            datetime.fromisoformat(entry["time"].replace("Z", "+00:00")))
    assert "sched-0" not in reached
    lateness = {nid: (times[0] - send_at).total_seconds() for nid, times in reached.items()}
    print("\nscheduled-send lateness (s):", lateness)
    assert sorted(reached) == [f"sched-{index}" for index in range(1, len(users))]
    assert all(len(times) == 1 for times in reached.values()), reached
    assert all(0 <= late <= BOUND_S for late in lateness.values()), lateness

    statuses = collections.Counter((e["trace_id"], e["status"]) for e in events_of(settings, traces))
    assert statuses[(traces[0], "canceled")] == 1
    assert all(statuses[(trace, "sent")] == 1 for trace in traces[1:])
    again = requests.delete(f"{api}/v1/notifications/sched-1", headers=auth, timeout=10)
    assert again.status_code == 409
