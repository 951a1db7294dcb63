"""Runner-dependent defaults of HeraldOptions: the DirectRunner's, else production's, flags first."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.bigquery_sink import WriteBatching
from pipelines.options import (DIRECT_DEDUPE_BUCKETS, DIRECT_WRITE_BATCHING, dedupe_buckets,
                               write_batching)


@pytest.mark.parametrize("runner_args", [[], ["--runner", "DirectRunner"]])
def test_the_direct_runner_gets_its_own_defaults(runner_args: list[str]) -> None:
    options = PipelineOptions(runner_args)
    assert write_batching(options) == DIRECT_WRITE_BATCHING != WriteBatching()
    assert dedupe_buckets(options) == DIRECT_DEDUPE_BUCKETS


def test_other_runners_get_production_defaults() -> None:
    options = PipelineOptions(["--runner", "DataflowRunner"])
    assert write_batching(options) == WriteBatching(rows=500, buffer_s=0.5)
    assert dedupe_buckets(options) == 0


def test_flags_win_over_any_default() -> None:
    options = PipelineOptions(["--runner", "DirectRunner", "--write_batch_rows", "50",
                               "--write_buffer_s", "0", "--dedupe_buckets", "0"])
    assert write_batching(options) == WriteBatching(rows=50, buffer_s=0.0)
    assert dedupe_buckets(options) == 0
