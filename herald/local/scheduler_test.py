"""The local stack's scheduler as `herald local up` runs it: a process that replays the outbox on
its own, again and again, logging each run (on the real Pub/Sub and Firestore emulators)."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from herald.clients import state_client
from herald.local import processes
from herald.local.processes import Service
from herald.local.scheduler import RUNNING_MARKER, Schedule
from herald.local.stack import REPO_ROOT
from herald.settings import Settings
from ingest_function.main_test import Probe
from ingest_function.outbox import Outbox
from ingest_function.outbox_test import envelope

pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


def test_schedule_from_the_environment_and_zero_turns_a_job_off() -> None:
    assert Schedule.from_env({}) == Schedule()
    assert Schedule.from_env({"HERALD_OUTBOX_REPLAY_EVERY_S": "0.5", "HERALD_RECONCILE_EVERY_S": "0",
                              "HERALD_RECONCILE_GRACE_S": "30"}) == Schedule(0.5, 0, 30)


REPUBLISHED_ONE = "outbox-replay: republished 1 outbox entries"


def published_within(probe: Probe, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not (received := probe.pull()):
        assert time.monotonic() < deadline, "nothing published"
        time.sleep(0.1)
    return [message.attributes["trace_id"] for message in received]


def test_the_scheduler_replays_the_outbox_every_interval_and_logs_each_run(
        pubsub_emulator: str, firestore_emulator: str, tmp_path: Path) -> None:
    project = f"scheduler-{uuid.uuid4().hex[:10]}"
    topic = pubsub_v1.PublisherClient().create_topic(name=f"projects/{project}/topics/requests").name
    subscriber = pubsub_v1.SubscriberClient()
    probe = Probe(subscriber, subscriber.create_subscription(
        name=f"projects/{project}/subscriptions/probe", topic=topic).name)
    outbox = Outbox(state_client(Settings(project=project)))
    waiting = envelope()
    outbox.add(waiting, topic, TimeoutError())
    log = tmp_path / "scheduler.log"
    process = processes.start(Service(
        "scheduler", [sys.executable, "-m", "herald.local.scheduler"],
        processes.log_contains(log, RUNNING_MARKER),
        env={"HERALD_PROJECT": project, "HERALD_OUTBOX_REPLAY_EVERY_S": "0.5",
             "HERALD_RECONCILE_EVERY_S": "0", "HERALD_FCM_EXPORT_SYNC_EVERY_S": "0",
             "PYTHONPATH": str(REPO_ROOT)}), tmp_path)
    try:
        assert published_within(probe, 10) == [waiting.trace_id]
        idle, deadline = processes.log_contains(log, "republished 0"), time.monotonic() + 10
        while not idle():  # a run that found nothing: the next entry waits for a later run
            assert time.monotonic() < deadline, "no further run"
            time.sleep(0.1)
        later = envelope()
        outbox.add(later, topic, TimeoutError())  # picked up by a later run, unprompted
        assert published_within(probe, 5) == [later.trace_id]
        # the run logs after its publish returns, so the probe may see the message first
        deadline = time.monotonic() + 5
        while log.read_text().count(REPUBLISHED_ONE) < 2:
            assert time.monotonic() < deadline, "the later run was not logged"
            time.sleep(0.1)
    finally:
        processes.stop_group(process.pid)
    text = log.read_text()
    assert "outbox-replay every 0.5 s" in text and "reconcile every" not in text
    assert text.count(REPUBLISHED_ONE) == 2
