"""The outbox against the real Firestore and Pub/Sub emulators: entries keep the exact message,
replay goes oldest first, publishes each entry once, and leaves refused entries pending."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.cloud import firestore, pubsub_v1

from herald import cli
from herald.clients import state_client
from herald.contracts import Envelope, Release, Scope, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.local.processes import free_port
from herald.settings import Settings
from ingest_function.main_test import Probe
from ingest_function.outbox import COLLECTION, KEEP_PUBLISHED, Cancel, Outbox, schedule_id

pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")
TIMEOUT_S = 10.0  # a healthy emulator's publish: a bound, not a wait (the product default)


@dataclass(frozen=True)
class World:
    """A private project: its topic, a probe subscription on it, and its Firestore."""

    project: str
    topic: str
    probe: Probe
    db: firestore.Client

    def published(self) -> list[str]:
        """Trace ids of everything published since the last look."""
        return [message.attributes["trace_id"] for message in self.probe.pull()]

    def entry(self, trace_id: str) -> dict:
        return self.db.collection(COLLECTION).document(trace_id).get().to_dict()


@pytest.fixture
def world(pubsub_emulator: str, firestore_emulator: str) -> World:
    project = f"outbox-{uuid.uuid4().hex[:10]}"
    topic = pubsub_v1.PublisherClient().create_topic(name=f"projects/{project}/topics/requests").name
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.create_subscription(
        name=f"projects/{project}/subscriptions/probe", topic=topic).name
    return World(project, topic, Probe(subscriber, subscription),
                 state_client(Settings(project=project)))


def envelope(accepted_at: str | None = None) -> Envelope:
    made = new_envelope(parse_request({**DESIGN_BODY, "notificationId": uuid.uuid4().hex}),
                        "orders-svc")
    return made if accepted_at is None else replace(made, accepted_at=accepted_at)


def test_an_entry_keeps_the_exact_message_pending(world: World) -> None:
    stored = envelope()
    Outbox(world.db).add(stored, world.topic, TimeoutError())
    entry = world.entry(stored.trace_id)
    data, attributes = stored.to_pubsub()
    assert (entry["state"], entry["attempts"], entry["topic"]) == ("pending", 1, world.topic)
    assert (entry["data"], entry["attributes"]) == (data, attributes)
    assert entry["last_error"] == "TimeoutError: "
    assert "expires_at" not in entry  # a pending entry is never deleted by the TTL policy


def test_replay_goes_oldest_first_publishes_once_and_marks_published(world: World) -> None:
    outbox, publisher = Outbox(world.db), pubsub_v1.PublisherClient()
    later = envelope("2026-01-01T00:00:02.000000Z")
    earlier = envelope("2026-01-01T00:00:01.000000Z")
    for stored in (later, earlier):
        outbox.add(stored, world.topic, TimeoutError())
    assert outbox.replay(publisher, TIMEOUT_S, limit=1).published == 1
    assert world.published() == [earlier.trace_id]
    assert outbox.replay(publisher, TIMEOUT_S).published == 1
    assert world.published() == [later.trace_id]
    entry = world.entry(earlier.trace_id)
    assert (entry["state"], entry["attempts"], entry["leased_until"]) == ("published", 2, None)
    assert entry["expires_at"] - entry["published_at"] == pytest.approx(KEEP_PUBLISHED,
                                                                       abs=timedelta(seconds=5))
    assert outbox.replay(publisher, TIMEOUT_S).published == 0
    assert world.published() == []


def test_entries_pubsub_refuses_stay_pending_for_the_next_run(world: World, monkeypatch) -> None:
    outbox, stored = Outbox(world.db), envelope()
    outbox.add(stored, world.topic, TimeoutError())
    with monkeypatch.context() as down:
        down.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
        dead_publisher = pubsub_v1.PublisherClient()
    report = outbox.replay(dead_publisher, 0.3)
    assert report.published == 0 and report.error
    entry = world.entry(stored.trace_id)
    assert (entry["state"], entry["attempts"], entry["leased_until"]) == ("pending", 2, None)
    assert entry["last_error"] == report.error
    assert outbox.replay(pubsub_v1.PublisherClient(), TIMEOUT_S).published == 1
    assert world.published() == [stored.trace_id]


def test_an_entry_needs_a_full_topic_path(world: World) -> None:
    with pytest.raises(ValueError, match="full topic path"):
        Outbox(world.db).hold(envelope(), "requests", datetime.now(timezone.utc))


def test_an_entry_pubsub_refuses_as_invalid_is_set_aside_and_holds_back_nothing(
        world: World) -> None:
    outbox, publisher = Outbox(world.db), pubsub_v1.PublisherClient()
    invalid = envelope("2026-01-01T00:00:01.000000Z")
    later = [envelope(f"2026-01-01T00:00:0{second}.000000Z") for second in (2, 3)]
    for stored in (invalid, *later):
        outbox.add(stored, world.topic, TimeoutError())
    # as an earlier pipeline wrote its holds: a topic id where Pub/Sub needs a path
    world.db.collection(COLLECTION).document(invalid.trace_id).update({"topic": "requests"})
    report = outbox.replay(publisher, TIMEOUT_S)
    assert (report.published, report.refused, report.error) == (2, 1, None)
    assert sorted(world.published()) == sorted(stored.trace_id for stored in later)
    assert outbox.replay(publisher, TIMEOUT_S).refused == 0  # set aside once, not retried
    entry = world.entry(invalid.trace_id)
    assert (entry["state"], entry["leased_until"]) == ("refused", None)
    assert "InvalidArgument" in entry["last_error"] and "expires_at" in entry
    assert report.summary() == "republished 2 outbox entries, 1 refused as invalid and set aside"


def test_a_deferred_delivery_is_published_scoped_to_it_once_due(world: World) -> None:
    outbox, publisher = Outbox(world.db), pubsub_v1.PublisherClient()
    first = envelope()
    scoped = replace(first, scope=Scope(only_span="span-1", replay_id="defer-1"))
    soon = datetime.now(timezone.utc) + timedelta(seconds=2)
    outbox.defer(scoped, world.topic, soon, "QUOTA_EXCEEDED")
    assert outbox.replay(publisher, TIMEOUT_S).published == 0  # not due yet
    assert world.published() == []
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    assert outbox.replay(publisher, TIMEOUT_S).published == 1
    [message] = world.probe.pull()
    assert Envelope.from_pubsub(message.data, message.attributes).scope == scoped.scope
    assert outbox.replay(publisher, TIMEOUT_S).published == 0  # once


def test_concurrent_replayers_publish_each_entry_once(world: World) -> None:
    outbox, count = Outbox(world.db), 40
    traces = set()
    for _ in range(count):
        stored = envelope()
        traces.add(stored.trace_id)
        outbox.add(stored, world.topic, TimeoutError())
    start = threading.Barrier(2)

    def replayer(_: int) -> int:
        start.wait()
        return Outbox(world.db).replay(pubsub_v1.PublisherClient(), TIMEOUT_S).published

    with ThreadPoolExecutor(2) as pool:
        published = list(pool.map(replayer, range(2)))
    received = world.published()
    assert sum(published) == count
    assert sorted(received) == sorted(traces)


def test_cli_replays_the_local_stacks_outbox(world: World, pubsub_emulator: str,
                                             firestore_emulator: str, tmp_path: Path, monkeypatch,
                                             capsys) -> None:
    env = {"HERALD_PROJECT": world.project, "PUBSUB_EMULATOR_HOST": pubsub_emulator,
           "FIRESTORE_EMULATOR_HOST": firestore_emulator}
    Outbox(world.db).add(envelope(), world.topic, TimeoutError())
    (tmp_path / "local.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # restored afterwards: the command sets what local.env says
    cli.main(["--state-dir", str(tmp_path), "outbox", "replay", "--limit", "5"])
    assert capsys.readouterr().out.strip() == "republished 1 outbox entries"
    assert len(world.published()) == 1


def _wait_until(instant: datetime) -> None:
    time.sleep(max(0.0, (instant - datetime.now(timezone.utc)).total_seconds()) + 0.1)


def test_a_scheduled_request_is_held_once_and_published_as_its_due_release(world: World) -> None:
    outbox, publisher = Outbox(world.db), pubsub_v1.PublisherClient()
    scheduled = envelope()
    soon = datetime.now(timezone.utc) + timedelta(seconds=2)
    assert outbox.hold(scheduled, world.topic, soon) == scheduled.trace_id
    assert outbox.hold(scheduled, world.topic, soon) == scheduled.trace_id  # a redelivery
    same_id = replace(envelope(), request=scheduled.request)  # the sender reused the id
    assert outbox.hold(same_id, world.topic, soon) == scheduled.trace_id
    assert outbox.replay(publisher, TIMEOUT_S).published == 0  # not due yet
    _wait_until(soon)
    assert outbox.replay(publisher, TIMEOUT_S).published == 1
    [message] = world.probe.pull()
    assert Envelope.from_pubsub(message.data, message.attributes) == replace(
        scheduled, release=Release.DUE)
    assert outbox.cancel("orders-svc", scheduled.request.notification_id) is Cancel.ALREADY_SENT


def test_a_cancel_releases_the_request_as_canceled_at_once(world: World) -> None:
    outbox, publisher = Outbox(world.db), pubsub_v1.PublisherClient()
    scheduled = envelope()
    notification_id = scheduled.request.notification_id
    outbox.hold(scheduled, world.topic, datetime.now(timezone.utc) + timedelta(days=3))
    assert outbox.cancel("news-svc", notification_id) is Cancel.UNKNOWN  # ids are per sender
    assert outbox.cancel("orders-svc", "never-sent") is Cancel.UNKNOWN
    assert outbox.cancel("orders-svc", notification_id) is Cancel.CANCELED
    assert outbox.cancel("orders-svc", notification_id) is Cancel.CANCELED  # a repeat
    assert outbox.replay(publisher, TIMEOUT_S).published == 1  # due at once, three days early
    [message] = world.probe.pull()
    assert Envelope.from_pubsub(message.data, message.attributes).release is Release.CANCELED
    assert world.entry(schedule_id("orders-svc", notification_id))["state"] == "published"


def test_a_cancel_loses_to_a_replayer_holding_the_entry(world: World) -> None:
    """A replayer that leased the entry is publishing its due release: too late to cancel."""
    outbox = Outbox(world.db)
    scheduled = envelope()
    outbox.hold(scheduled, world.topic, datetime.now(timezone.utc) - timedelta(seconds=1))
    ref = world.db.collection(COLLECTION).document(
        schedule_id("orders-svc", scheduled.request.notification_id))
    ref.update({"leased_until": datetime.now(timezone.utc) + timedelta(minutes=1)})
    assert outbox.cancel("orders-svc", scheduled.request.notification_id) is Cancel.ALREADY_SENT


def test_replay_for_polls_through_its_window(world: World) -> None:
    """Cloud Scheduler calls the replay once a minute; polling inside the call publishes a
    scheduled request due mid-window within a poll of its time, in the same call."""
    outbox = Outbox(world.db)
    due = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    outbox.hold(envelope(), world.topic, due)
    started = time.monotonic()
    report = outbox.replay_for(pubsub_v1.PublisherClient(), TIMEOUT_S, window_s=3, every_s=0.5)
    assert report.published == 1 and 2.5 <= time.monotonic() - started < 6
    [message] = world.probe.pull()
    assert message.publish_time >= due
