"""A Pub/Sub outage and a pipeline crash on the local stack, with nobody typing a command.

On a private stack with the settings `herald local up` gives a user (publish timeout 10 s):
- Pub/Sub is frozen for 10 s (`stack.frozen`) while 40 requests arrive, evenly spread. Each gets
  its 202 in under a second after the first few (the edge's circuit breaker sends them to the
  outbox without waiting for Pub/Sub), and each reaches the provider (the sandbox ledger) within
  10 s of Pub/Sub's return (the stack's scheduler replays the outbox every 2 s).
- The delivery pipeline's process is SIGKILLed: the stack's supervisor restarts it and says so in
  the stack log, and a request accepted while it was down is delivered.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from herald.local import stack
from herald.local.seed import demo_users

pytestmark = pytest.mark.slow

SEED_USERS = 50
FREEZE_S = 10.0
DURING_FREEZE = 40
FIRST_FEW = 5
"""Requests that may wait for the breaker to open: the first ones have no answer from Pub/Sub
within the slow-call threshold (1 s) until three of them count."""
DELIVERED_WITHIN_S = 10.0


@dataclass(frozen=True)
class Answer:
    notification_id: str
    status: int
    seconds: float


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private stack: freezing and killing would disturb the shared one's tests."""
    state_dir = tmp_path_factory.mktemp("outage-state")
    with stack.running(state_dir, seed_users=SEED_USERS) as env:
        yield state_dir, env


RECIPIENTS = [user.user_id for user in demo_users(SEED_USERS) if user.document["notification_enabled"]]
"""Seeded users who get email in the `delivery` category (no opt-out applies to them)."""


def body(notification_id: str, n: int) -> dict[str, Any]:
    return {"userId": RECIPIENTS[n % len(RECIPIENTS)], "notificationId": notification_id,
            "serviceType": "orders", "categoryType": "delivery", "notificationType": "email",
            "priority": "high", "templateType": "order_shipped",
            "notificationInfo": {"title": "Shipped", "content": f"Parcel {n}"}}


class Api:
    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._local = threading.local()

    def post(self, notification_id: str, n: int) -> Answer:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self._env['HERALD_API_KEY']}"
        began = time.monotonic()
        response = session.post(f"{self._env['HERALD_API_URL']}/v1/notifications",
                                json=body(notification_id, n), timeout=30)
        return Answer(notification_id, response.status_code, time.monotonic() - began)

    def delivered(self) -> set[str]:
        """notificationIds the email provider received."""
        entries = requests.get(f"{self._env['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()
        return {entry["notification_id"] for entry in entries["entries"]}

    def wait_delivered(self, wanted: set[str], timeout_s: float) -> float:
        """Seconds until every wanted notificationId is in the ledger; fails after `timeout_s`."""
        began = time.monotonic()
        while not wanted <= (seen := self.delivered()):
            assert time.monotonic() - began < timeout_s, \
                f"not delivered after {timeout_s} s: {sorted(wanted - seen)}"
            time.sleep(0.2)
        return time.monotonic() - began


def test_a_pubsub_outage_costs_senders_no_wait_and_loses_nothing(outage_stack) -> None:
    state_dir, env = outage_stack
    api = Api(env)
    assert api.post("warm-up", 0).status == 202  # the pipeline is up and delivering
    api.wait_delivered({"warm-up"}, timeout_s=120)

    def arrive(n: int) -> Answer:
        time.sleep(max(0.0, began + n * FREEZE_S / DURING_FREEZE - time.monotonic()))
        return api.post(f"outage-{n}", n)

    with ThreadPoolExecutor(DURING_FREEZE) as pool:
        with stack.frozen(state_dir):
            began = time.monotonic()
            arriving = [pool.submit(arrive, n) for n in range(DURING_FREEZE)]
            time.sleep(max(0.0, began + FREEZE_S - time.monotonic()))
        answers = [future.result() for future in arriving]
    back = time.monotonic()
    assert [a.status for a in answers] == [202] * DURING_FREEZE
    late = [(a.notification_id, round(a.seconds, 2)) for a in answers[FIRST_FEW:] if a.seconds >= 1]
    assert late == [], "a 202 took a second or more after the first few"
    assert max(a.seconds for a in answers[:FIRST_FEW]) < 5, "the first ones waited for the timeout"

    api.wait_delivered({a.notification_id for a in answers}, timeout_s=60)
    delivered_after_s = time.monotonic() - back
    print(f"\noutage: first {FIRST_FEW} answered in "
          f"{[round(a.seconds, 2) for a in answers[:FIRST_FEW]]} s, the rest in at most "
          f"{max(a.seconds for a in answers[FIRST_FEW:]):.3f} s; all delivered "
          f"{delivered_after_s:.1f} s after Pub/Sub came back")
    assert delivered_after_s <= DELIVERED_WITHIN_S, \
        f"the last one reached the provider {delivered_after_s:.1f} s after Pub/Sub came back"
    ledger = requests.get(f"{env['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()["entries"]
    sends = [e["notification_id"] for e in ledger
             if (e["notification_id"] or "").startswith("outage-")]
    assert sorted(sends) == sorted(a.notification_id for a in answers), "each sent exactly once"
    log = (state_dir / "logs" / "scheduler.log").read_text()
    assert "outbox-replay: republished" in log and "republished 0 outbox entries" in log


def test_a_killed_pipeline_is_restarted_by_the_stack_and_delivers(outage_stack) -> None:
    state_dir, env = outage_stack
    api = Api(env)
    crashed = stack.pipeline_pid(state_dir)
    os.kill(crashed, signal.SIGKILL)  # a crash, from outside the stack
    assert api.post("after-crash", 1).status == 202  # accepted while the pipeline is down
    api.wait_delivered({"after-crash"}, timeout_s=120)
    deadline = time.monotonic() + 120  # a high-priority request may be delivered by the urgent
    while True:                        # lane's pipeline before this one is back
        try:
            restarted = stack.pipeline_pid(state_dir)
            break
        except ValueError:
            assert time.monotonic() < deadline, "the pipeline was not restarted"
            time.sleep(0.2)
    restarts = (state_dir / "logs" / stack.STACK_LOG).read_text()
    assert f"supervisor: pipeline (pid {crashed}) exited with code -9 (SIGKILL); " \
           "restart 1 in 1 s" in restarts
    assert f"supervisor: pipeline restarted (pid {restarted}, restart 1)" in restarts
    assert restarted != crashed
