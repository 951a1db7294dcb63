"""memoize_dofn_specs: the runner gets the same state and timer specs, computed once per DoFn kind."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import userstate

from pipelines.dedupe import _FirstClaimWins
from pipelines.direct_runner import memoize_dofn_specs


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
