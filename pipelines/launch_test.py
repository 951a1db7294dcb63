"""run_streaming submits a Dataflow job and returns (a Flex Template launcher must exit after
run()), while the DirectRunner's job runs in the calling process."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.launch import run_streaming


class _Submitted:
    """What Pipeline.run returns for a streaming job: waiting on it would block forever."""

    def __init__(self) -> None:
        self.waited = False

    def wait_until_finish(self) -> None:
        self.waited = True


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> _Submitted:
    """Pipeline.run replaced: no Dataflow service exists here to submit to."""
    result = _Submitted()
    monkeypatch.setattr(beam.Pipeline, "run", lambda self: result)
    return result


def test_a_dataflow_job_is_submitted_and_not_waited_for(submitted: _Submitted, tmp_path) -> None:
    options = PipelineOptions(["--runner", "DataflowRunner", "--project", "p", "--region", "r",
                               "--temp_location", str(tmp_path), "--no_auth",
                               "--dataflow_endpoint", "http://localhost:9"])
    run_streaming(options, lambda pipeline: None)
    assert not submitted.waited
    assert options.view_as(beam.options.pipeline_options.StandardOptions).streaming
