"""`herald dlq replay` on the real Pub/Sub emulator: the dead letters whose reason is asked for go
back to the topic they came from (a delivery scoped to its span under its dead letter's id, a poison
message as it came) and are acknowledged; the others are back on the `-hold` subscription at once;
`limit` caps a run, and the report counts what it did."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import pubsub_v1

from herald import dlq
from herald.contracts import new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.dead_letters import HOLD_SUFFIX, DeadLetter
from herald.local.provision import create_topics
from herald.settings import Settings

# The emulator honours return_immediately (deprecated in production): it keeps empty pulls fast.
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture
def settings(pubsub_emulator: str) -> Settings:
    made = Settings(project=f"dlq-{uuid.uuid4().hex[:8]}")
    create_topics(made)
    return made


def pull(settings: Settings, subscription: str) -> list[pubsub_v1.types.PubsubMessage]:
    """Everything available on the subscription now, acknowledged."""
    subscriber, path = pubsub_v1.SubscriberClient(), settings.subscription_path(subscription)
    received = []
    while response := subscriber.pull(subscription=path, max_messages=100,
                                      return_immediately=True).received_messages:
        subscriber.acknowledge(subscription=path, ack_ids=[r.ack_id for r in response])
        received += [r.message for r in response]
    return received


def unacknowledged(settings: Settings, subscription: str) -> list[pubsub_v1.types.PubsubMessage]:
    """What was never acknowledged, leased or not: seeking back redelivers it at once."""
    pubsub_v1.SubscriberClient().seek(request={
        "subscription": settings.subscription_path(subscription),
        "time": datetime.now(timezone.utc) - timedelta(hours=1)})
    return pull(settings, subscription)


def park(settings: Settings, *dead_letters: DeadLetter) -> None:
    publisher = pubsub_v1.PublisherClient()
    for dead_letter in dead_letters:
        data, attributes = dead_letter.to_pubsub()
        publisher.publish(settings.topic_path(settings.dead_letter_topic), data,
                          **attributes).result(timeout=30)


def delivery(settings: Settings, reason: str) -> DeadLetter:
    envelope = new_envelope(parse_request({**DESIGN_BODY, "notificationId": uuid.uuid4().hex}),
                            "orders-svc")
    return DeadLetter.of_delivery(settings.requests_topic, envelope, uuid.uuid4().hex[:16], reason)


def replay(settings: Settings, **options) -> dlq.Report:
    return dlq.replay(settings, pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient(),
                      **options)


def test_asked_for_reasons_go_back_to_their_topics_and_the_rest_stay_parked(
        settings: Settings) -> None:
    retried = delivery(settings, "retries_exhausted")
    unknown = delivery(settings, "outcome_unknown")
    poison = DeadLetter(settings.callbacks_topic, "invalid_message", b"\xff{not json",
                        {"source": "twilio"})
    park(settings, retried, unknown, poison)

    report = replay(settings, reasons=frozenset({"retries_exhausted", "invalid_message"}))

    assert (report.replayed, report.left) == (2, 1)
    assert report.by_reason == {"retries_exhausted": 1, "invalid_message": 1}
    [request] = pull(settings, settings.requests_subscription)
    assert request.data == retried.data
    assert dict(request.attributes) == {**retried.attributes, "only_span": retried.span_id,
                                        "replay_id": retried.dead_letter_id}
    [callback] = pull(settings, settings.callbacks_subscription)
    assert (callback.data, dict(callback.attributes)) == (b"\xff{not json", {"source": "twilio"})
    hold = settings.dead_letter_topic + HOLD_SUFFIX
    [kept] = pull(settings, hold)  # available at once: the replay gave it back
    assert kept.attributes["dlq_id"] == unknown.dead_letter_id
    assert unacknowledged(settings, hold) == []  # the replayed ones were acknowledged


def test_limit_caps_a_run_and_the_next_run_takes_the_rest(settings: Settings) -> None:
    parked = [delivery(settings, "retries_exhausted") for _ in range(3)]
    park(settings, *parked)

    first = replay(settings, limit=2)
    assert (first.replayed, first.left, first.by_reason) == (2, 1, {"retries_exhausted": 2})
    replayed = {m.attributes["replay_id"] for m in pull(settings, settings.requests_subscription)}
    assert len(replayed) == 2

    second = replay(settings)
    assert (second.replayed, second.left) == (1, 0)
    replayed |= {m.attributes["replay_id"] for m in pull(settings, settings.requests_subscription)}
    assert replayed == {d.dead_letter_id for d in parked}
    assert unacknowledged(settings, settings.dead_letter_topic + HOLD_SUFFIX) == []


def test_a_refused_event_row_stays_parked_even_when_everything_is_replayed(
        settings: Settings) -> None:
    """An event row BigQuery refused has no topic to go back to: a replay of everything leaves
    it parked (it is fixed and inserted from the dead_letters table) and replays the rest."""
    row = DeadLetter(f"{settings.project}.herald.events", "row_rejected", b'{"event_id": "e"}',
                     detail='[{"reason": "invalid"}]')
    retried = delivery(settings, "retries_exhausted")
    park(settings, row, retried)
    report = replay(settings)
    assert (report.replayed, report.left, report.by_reason) == (1, 1, {"retries_exhausted": 1})
    [kept] = pull(settings, settings.dead_letter_topic + HOLD_SUFFIX)
    assert kept.attributes["dlq_reason"] == "row_rejected"
