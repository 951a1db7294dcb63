"""memoize_dofn_specs: the runner gets the same state and timer specs, computed once per DoFn kind.
enlarge_pubsub_pulls: the read evaluator's pulls ask for PULL_MAX_MESSAGES."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import userstate

from pipelines.dedupe import _FirstClaimWins
from pipelines.direct_runner import PULL_MAX_MESSAGES, enlarge_pubsub_pulls, memoize_dofn_specs


def test_specs_are_the_originals_and_computed_once_per_kind(monkeypatch) -> None:
    original = userstate.get_dofn_specs
    calls: list[object] = []
    monkeypatch.setattr(userstate, "get_dofn_specs", lambda d: calls.append(d) or original(d))
    monkeypatch.setattr(transform_evaluator, "get_dofn_specs", userstate.get_dofn_specs)
    memoize_dofn_specs()
    stateful = _FirstClaimWins(60, lambda d: d)
    double, square = (beam.Map(lambda x: 2 * x).dofn, beam.Map(lambda x: x * x).dofn)

    for _ in range(3):  # the runner unpickles a fresh copy for every bundle
        for dofn in (stateful, double, square):
            copy = pickler.loads(pickler.dumps(dofn))
            assert transform_evaluator.get_dofn_specs(copy) == original(dofn)
    assert userstate.get_dofn_specs(stateful) == ({_FirstClaimWins.CLAIMS}, {_FirstClaimWins.SWEEP})
    assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(double)
    assert len(calls) == 3  # once per kind: the dedupe DoFn and each Map's function


class _RecordingSubscriber:
    def __init__(self) -> None:
        self.pulls: list[dict] = []

    def pull(self, **request: object) -> str:
        self.pulls.append(request)
        return "response"

    def acknowledge(self, **request: object) -> str:
        return "acked"


def test_pulls_ask_for_more_messages_and_the_rest_of_the_client_is_untouched(monkeypatch) -> None:
    evaluator = transform_evaluator._PubSubReadEvaluator
    subscriber = _RecordingSubscriber()
    monkeypatch.setattr(evaluator, "_get_subscriber_client",
                        classmethod(lambda cls, transform: subscriber))
    enlarge_pubsub_pulls()
    enlarge_pubsub_pulls()  # idempotent: not wrapped twice
    client = evaluator._get_subscriber_client(object())

    assert client.pull(subscription="s", max_messages=10, timeout=30) == "response"
    assert subscriber.pulls == [{"subscription": "s", "max_messages": PULL_MAX_MESSAGES,
                                 "timeout": 30}]
    assert client.acknowledge(subscription="s", ack_ids=["a"]) == "acked"
