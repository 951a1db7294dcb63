"""memoize_dofn_specs: the runner gets the same state and timer specs, computed once per DoFn kind.
tune_pubsub_pulls: the read evaluator's pulls ask for PULL_MAX_MESSAGES and do not block."""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import userstate
from google.cloud import pubsub_v1

from pipelines.dedupe import _DropRedeliveries
from pipelines.direct_runner import (IDLE_PULL_WAIT_S, PULL_MAX_MESSAGES, memoize_dofn_specs,
                                     tune_pubsub_pulls)


def test_specs_are_the_originals_and_computed_once_per_kind(monkeypatch) -> None:
    original = userstate.get_dofn_specs
    calls: list[object] = []
    monkeypatch.setattr(userstate, "get_dofn_specs", lambda d: calls.append(d) or original(d))
    monkeypatch.setattr(transform_evaluator, "get_dofn_specs", userstate.get_dofn_specs)
    memoize_dofn_specs()
    stateful = _DropRedeliveries(60, lambda d: d)
    double, square = (beam.Map(lambda x: 2 * x).dofn, beam.Map(lambda x: x * x).dofn)

    for _ in range(3):  # the runner unpickles a fresh copy for every bundle
        for dofn in (stateful, double, square):
            copy = pickler.loads(pickler.dumps(dofn))
            assert transform_evaluator.get_dofn_specs(copy) == original(dofn)
    assert userstate.get_dofn_specs(stateful) == ({_DropRedeliveries.CLAIMS}, {_DropRedeliveries.SWEEP})
    assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(double)
    assert len(calls) == 3  # once per kind: the dedupe DoFn and each Map's function


def test_pulls_take_up_to_their_size_at_once_and_an_empty_one_pauses_briefly(
        pubsub_emulator: str, monkeypatch) -> None:
    """The read evaluator's client on the real Pub/Sub emulator: 150 messages waiting come in
    pulls of PULL_MAX_MESSAGES and then the rest, each acknowledged as before; an empty
    subscription answers after IDLE_PULL_WAIT_S, not after the evaluator's 30 s timeout."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name="projects/direct-runner-test/topics/reads").name
    subscription = subscriber.create_subscription(
        name="projects/direct-runner-test/subscriptions/reads", topic=topic).name
    for future in [publisher.publish(topic, str(n).encode()) for n in range(150)]:
        future.result(timeout=30)

    evaluator = transform_evaluator._PubSubReadEvaluator
    monkeypatch.setattr(evaluator, "_get_subscriber_client",
                        classmethod(lambda cls, transform: subscriber))
    tune_pubsub_pulls()
    tune_pubsub_pulls()  # idempotent: not wrapped twice
    client = evaluator._get_subscriber_client(object())
    sizes = []
    while sum(sizes) < 150:
        assert len(sizes) < 20, f"150 messages not read in 20 pulls: {sizes}"
        response = client.pull(subscription=subscription, max_messages=10, timeout=30)
        sizes.append(len(response.received_messages))
        client.acknowledge(subscription=subscription,
                           ack_ids=[m.ack_id for m in response.received_messages])
    assert max(sizes) == PULL_MAX_MESSAGES and sum(sizes) == 150

    started = time.monotonic()
    assert not client.pull(subscription=subscription, max_messages=10, timeout=30).received_messages
    assert IDLE_PULL_WAIT_S <= time.monotonic() - started < 5
