"""memoize_dofn_specs: the runner gets the same state and timer specs, computed once per DoFn kind.
tune_pubsub_pulls: the read evaluator's pulls ask for PULL_MAX_MESSAGES and do not block.
reuse_dofn_copies: one roundtripped copy of each DoFn for every bundle, its methods inspected once."""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.runners import common
from apache_beam.runners.direct import transform_evaluator
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, userstate
from google.cloud import pubsub_v1

from pipelines.dedupe import _DropRedeliveries
from pipelines.direct_runner import (IDLE_PULL_WAIT_S, PULL_MAX_MESSAGES, memoize_dofn_specs,
                                     reuse_dofn_copies, tune_pubsub_pulls)



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


def test_each_step_reuses_one_copy_of_its_dofn_and_inspects_it_once(monkeypatch) -> None:
    """reuse_dofn_copies: the evaluator's roundtrip returns a real copy (pickled and unpickled
    once per DoFn) and then that same copy; the inspection of the copy's methods, which Beam's
    compiled DoFnSignature asks for on every bundle, is done once, and other objects are inspected
    as before. A pipeline on the runner these evaluators belong to (the streaming DirectRunner's)
    gives the same output with it installed."""
    monkeypatch.setattr(transform_evaluator, "pickler", pickler)
    inspections: list[tuple[object, str]] = []
    original_inspection = core.get_function_arguments
    monkeypatch.setattr(core, "get_function_arguments",
                        lambda o, f: inspections.append((o, f)) or original_inspection(o, f))
    roundtrips: list[object] = []
    original_roundtrip = pickler.roundtrip
    monkeypatch.setattr(pickler, "roundtrip", lambda o: roundtrips.append(o) or original_roundtrip(o))
    reuse_dofn_copies()
    reuse_dofn_copies()  # idempotent: not wrapped twice
    double, square = beam.Map(lambda x: 2 * x).dofn, beam.Map(lambda x: x * x).dofn

    first = transform_evaluator.pickler.roundtrip(double)
    assert first is not double and isinstance(first, type(double))
    assert any(o is double for o in roundtrips)
    made = len(roundtrips)
    assert all(transform_evaluator.pickler.roundtrip(double) is first for _ in range(3))
    assert len(roundtrips) == made  # the copy again, no roundtrip
    assert transform_evaluator.pickler.roundtrip(square) is not first
    assert any(o is square for o in roundtrips[made:])
    assert transform_evaluator.pickler.loads is pickler.loads  # the rest is Beam's pickler

    def inspections_of(obj: object) -> int:
        return sum(o is obj for o, _ in inspections)

    common.DoFnSignature(first)  # what the runner builds for every bundle
    once = inspections_of(first)
    assert once > 0
    assert [common.DoFnSignature(first).process_method.args for _ in range(3)] == [["x"]] * 3
    assert inspections_of(first) == once
    before = inspections_of(double)
    common.DoFnSignature(double)
    each = inspections_of(double) - before
    common.DoFnSignature(double)  # not a reused copy: inspected each time, as before
    assert each > 0 and inspections_of(double) - before == 2 * each

    with beam.Pipeline(runner=BundleBasedDirectRunner()) as pipeline:  # the evaluators patched
        doubled = (pipeline | beam.Create(range(100)) | beam.Map(lambda x: 2 * x)
                   | beam.CombineGlobally(sum))
        assert_that(doubled, equal_to([9900]))
