"""`herald reconcile` on the BigQuery and Pub/Sub emulators: a request whose `resolved` event and
every delivery's terminal event are in BigQuery is acknowledged on the audit subscription; one that
is due and unfinished goes back to the requests topic as the same bytes, skipping the deliveries
that ended; one not yet due waits; one republished `MAX_REPUBLISHES` times is parked as an
`unreconciled` dead letter; heartbeats and garbage are just acknowledged."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from functions_framework import create_app
from google.cloud import pubsub_v1

from herald import events
from herald.clients import bigquery_client
from herald.contracts import HEARTBEAT_ATTRIBUTE, Envelope, Scope, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.dead_letters import DEAD_LETTERS_TABLE, HOLD_SUFFIX
from herald.dlq_test import pull, unacknowledged
from herald.events import Status
from herald.infrastructure import RESOURCE_VARIABLES
from herald.local.provision import create_topics
from herald.reconcile import MAX_REPUBLISHES, Reconciler
from herald.settings import Settings

FUNCTION_SOURCE = Path(__file__).resolve().parents[1] / "ingest_function" / "main.py"
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture
def settings(warehouse, pubsub_emulator: str) -> Settings:
    """A private dataset and private topics and subscriptions in the warehouse's project."""
    suffix = uuid.uuid4().hex[:8]
    made = dataclasses.replace(
        warehouse.load(f"reconcile_{suffix}", []), requests_topic=f"requests-{suffix}",
        requests_subscription=f"requests-{suffix}-pipeline",
        audit_subscription=f"requests-{suffix}-audit", dead_letter_topic=f"dead-letter-{suffix}")
    create_topics(made)
    return made


def accept(settings: Settings, count: int = 1, **attributes: str) -> list[Envelope]:
    """Publish `count` requests (with extra attributes), as the edge would; the pipeline's own
    subscription is drained so only republished copies are found there later."""
    publisher, accepted = pubsub_v1.PublisherClient(), []
    for _ in range(count):
        envelope = new_envelope(parse_request(DESIGN_BODY), "orders-svc")
        data, published = envelope.to_pubsub()
        publisher.publish(settings.topic_path(settings.requests_topic), data,
                          **published, **attributes).result(timeout=30)
        accepted.append(envelope)
    assert len(pull(settings, settings.requests_subscription)) == count
    return accepted


def record(settings: Settings, envelope: Envelope, deliveries: int, ended: int) -> set[str]:
    """The request's `resolved` event and `ended` terminal delivery events; their spans."""
    spans = [events.span_for(envelope.trace_id, "push", f"device-{n}") for n in range(ended)]
    rows = [events.request_event(envelope, Status.RESOLVED, deliveries=deliveries),
            *(events.delivery_event(envelope, span, Status.SENT) for span in spans)]
    assert bigquery_client(settings).insert_rows_json(settings.events_table, rows) == []
    return set(spans)


def reconcile(settings: Settings, grace_s: float = 0):
    return Reconciler(settings, bigquery_client(settings), pubsub_v1.SubscriberClient(),
                      pubsub_v1.PublisherClient(), grace_s=grace_s).run()


def test_a_finished_request_is_acknowledged(settings: Settings) -> None:
    [envelope] = accept(settings)
    record(settings, envelope, deliveries=2, ended=2)
    report = reconcile(settings)
    assert (report.finished, report.republished, report.parked, report.waiting) == (1, 0, 0, 0)
    assert pull(settings, settings.requests_subscription) == []
    assert unacknowledged(settings, settings.audit_subscription) == []


def test_a_request_the_pipeline_parked_whole_is_not_republished(settings: Settings) -> None:
    """Issue 9: a request the pipeline could not plan is parked (`unprocessable`) with a
    request-level dead_letter event; republishing it would only park it again."""
    [envelope] = accept(settings)
    row = events.request_event(envelope, Status.DEAD_LETTER, reason="unprocessable", detail="x")
    assert bigquery_client(settings).insert_rows_json(settings.events_table, [row]) == []
    report = reconcile(settings)
    assert (report.finished, report.republished, report.parked) == (1, 0, 0)
    assert pull(settings, settings.requests_subscription) == []


def test_a_request_with_no_events_is_republished_whole(settings: Settings) -> None:
    [envelope] = accept(settings)
    report = reconcile(settings)
    assert (report.finished, report.republished, report.parked) == (0, 1, 0)
    assert report.republished_traces == [envelope.trace_id]
    [copy] = pull(settings, settings.requests_subscription)
    data, attributes = envelope.to_pubsub()
    assert (copy.data, dict(copy.attributes)) == (data, {**attributes, "reconciled": "1"})
    # The copy is audited in turn, by the next run; the original was acknowledged.
    [audited] = pull(settings, settings.audit_subscription)
    assert audited.message_id == copy.message_id
    assert unacknowledged(settings, settings.audit_subscription) == []


def test_a_partly_finished_request_skips_the_deliveries_that_ended(settings: Settings) -> None:
    [envelope] = accept(settings)
    ended = record(settings, envelope, deliveries=3, ended=2)
    assert reconcile(settings).republished == 1
    [copy] = pull(settings, settings.requests_subscription)
    assert Envelope.from_pubsub(copy.data, copy.attributes) == dataclasses.replace(
        envelope, scope=Scope(skip_spans=ended))
    assert copy.attributes["reconciled"] == "1"


def test_a_delivery_deferred_to_the_outbox_is_not_republished(settings: Settings) -> None:
    [envelope] = accept(settings)
    ended = record(settings, envelope, deliveries=3, ended=1)
    waiting, other = (events.span_for(envelope.trace_id, "push", name) for name in ("w", "o"))
    rows = [events.delivery_event(envelope, waiting, Status.DEFERRED,
                                  not_before="2030-01-01T00:00:00Z"),
            # SendGrid's deferred callback has no parent span: it proves nothing here
            events.callback_event(span_id=other, status=Status.DEFERRED,
                                  occurred_at="2026-01-01T00:00:00Z", notification_id="n-1",
                                  provider="sendgrid", provider_message_id="m", callback_id="m",
                                  provider_code=None)]
    assert bigquery_client(settings).insert_rows_json(settings.events_table, rows) == []
    assert reconcile(settings).republished == 1
    [copy] = pull(settings, settings.requests_subscription)
    assert Envelope.from_pubsub(copy.data).scope.skip_spans == ended | {waiting}


def test_nothing_is_settled_before_the_grace_has_passed(settings: Settings) -> None:
    accept(settings, count=2)
    report = reconcile(settings, grace_s=3600)
    assert (report.waiting, report.finished, report.republished, report.parked) == (2, 0, 0, 0)
    assert pull(settings, settings.requests_subscription) == []
    assert len(unacknowledged(settings, settings.audit_subscription)) == 2


def test_a_request_republished_too_often_is_parked(settings: Settings, warehouse) -> None:
    [envelope] = accept(settings, reconciled=str(MAX_REPUBLISHES))
    report = reconcile(settings)
    assert (report.parked, report.republished) == (1, 0)
    assert pull(settings, settings.requests_subscription) == []
    [parked] = pull(settings, settings.dead_letter_topic + HOLD_SUFFIX)
    data, attributes = envelope.to_pubsub()
    assert parked.data == data
    assert parked.attributes["dlq_reason"] == "unreconciled"
    assert {k: v for k, v in parked.attributes.items() if not k.startswith("dlq_")} \
        == attributes
    [row] = warehouse.query(settings.dataset, f"""
        SELECT dead_letter_id, reason, trace_id, source_topic
        FROM `{settings.table(DEAD_LETTERS_TABLE)}`""")
    assert row == {"dead_letter_id": parked.attributes["dlq_id"], "reason": "unreconciled",
                   "trace_id": envelope.trace_id, "source_topic": settings.requests_topic}
    assert unacknowledged(settings, settings.audit_subscription) == []


def test_heartbeats_garbage_and_replays_are_just_acknowledged(settings: Settings) -> None:
    accept(settings, only_span="s-1", replay_id="dead-letter-1")  # an operator's replay
    publisher, topic = pubsub_v1.PublisherClient(), settings.topic_path(settings.requests_topic)
    publisher.publish(topic, b"{}", **{HEARTBEAT_ATTRIBUTE: "1"}).result(timeout=30)
    publisher.publish(topic, b"\xff not a request").result(timeout=30)
    assert len(pull(settings, settings.requests_subscription)) == 2
    report = reconcile(settings)
    assert (report.finished, report.republished, report.parked, report.waiting) == (0, 0, 0, 0)
    assert pull(settings, settings.requests_subscription) == []
    assert pull(settings, settings.dead_letter_topic + HOLD_SUFFIX) == []
    assert unacknowledged(settings, settings.audit_subscription) == []


def test_the_scheduled_function_runs_one_pass(settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ingest_function/main.py `reconcile`, which Cloud Scheduler calls, configured as terraform
    configures it: the settings' names in the variables herald.infrastructure gives terraform."""
    [finished] = accept(settings)
    record(settings, finished, deliveries=1, ended=1)
    [lost] = accept(settings)
    env = {variable: getattr(settings, field) for variable, field in RESOURCE_VARIABLES.items()}
    for name, value in {**env, "HERALD_PROJECT": settings.project,
                        "BIGQUERY_API_ENDPOINT": settings.bigquery_endpoint}.items():
        monkeypatch.setenv(name, value)
    client = create_app(target="reconcile", source=str(FUNCTION_SOURCE)).test_client()

    assert client.post("/?grace_s=-1").status_code == 400
    assert client.post("/?grace_s=0").get_json() == {
        "finished": 1, "republished": 1, "parked": 0, "waiting": 0}
    [republished] = pull(settings, settings.requests_subscription)
    assert republished.attributes["trace_id"] == lost.trace_id
def test_a_scheduled_request_is_left_to_the_outbox_and_its_release_is_audited(
        settings: Settings) -> None:
    """Issue 12: a request held for its sendTime (a `scheduled` event, nothing resolved) is never
    republished or parked by the reconciler, however old; its `due` release is audited as any
    request (republished, release kept, while unfinished); a canceled one is finished."""
    held, canceled = accept(settings, 2)
    [due] = accept(settings, release="due")
    rows = [events.request_event(held, Status.SCHEDULED, not_before="2099-01-01T00:00:00Z"),
            events.request_event(canceled, Status.SCHEDULED, not_before="2099-01-01T00:00:00Z"),
            events.request_event(canceled, Status.CANCELED),
            events.request_event(due, Status.SCHEDULED, not_before="2000-01-01T00:00:00Z")]
    assert bigquery_client(settings).insert_rows_json(settings.events_table, rows) == []
    report = reconcile(settings)
    assert (report.held, report.finished, report.republished, report.parked) == (1, 1, 1, 0)
    assert report.republished_traces == [due.trace_id]
    [copy] = pull(settings, settings.requests_subscription)
    assert copy.attributes["release"] == "due"


def test_a_request_whose_unfinished_deliveries_are_deferred_is_left_to_the_outbox(
        settings: Settings) -> None:
    """Issue 12: a delivery deferred to the end of quiet hours (hours away) is the outbox's: the
    request is neither republished nor parked meanwhile."""
    [envelope] = accept(settings)
    record(settings, envelope, deliveries=2, ended=1)
    deferred = events.delivery_event(envelope, "span-quiet", Status.DEFERRED,
                                     reason="quiet_hours", not_before="2099-01-01T07:00:00Z")
    assert bigquery_client(settings).insert_rows_json(settings.events_table, [deferred]) == []
    report = reconcile(settings)
    assert (report.held, report.finished, report.republished, report.parked) == (1, 0, 0, 0)
    assert pull(settings, settings.requests_subscription) == []
