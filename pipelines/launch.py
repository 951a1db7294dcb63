"""Running a Herald streaming job: the same for the delivery and the callbacks pipelines."""

from __future__ import annotations

import logging
import sys
from typing import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from herald.settings import Settings
from pipelines import direct_runner
from pipelines.options import DIRECT_RUNNERS, HeraldOptions, resolve_settings

RUNNING_MARKER = "herald pipeline constructed; running"
"""Logged once the graph is built: `herald local up` waits for it, so a construction error fails `up`."""


Build = Callable[[beam.Pipeline, Settings, HeraldOptions], None]


def _not_async_wrapper_chatter(record: logging.LogRecord) -> bool:
    """AsyncWrapper logs five INFO lines on the root logger at every commit poll (20 a second per
    send branch): a tenth of the DirectRunner thread went to writing them. Its warnings stay."""
    return record.module != "async_dofn" or record.levelno >= logging.WARNING


def main(build: Build) -> None:
    """A pipeline module's `__main__`: options from the command line, settings from options and
    environment, then `run_streaming`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger().addFilter(_not_async_wrapper_chatter)
    options = PipelineOptions(sys.argv[1:])
    settings = resolve_settings(options)
    run_streaming(options, lambda p: build(p, settings, options.view_as(HeraldOptions)))


def run_streaming(options: PipelineOptions, build: Callable[[beam.Pipeline], None]) -> None:
    """Build and run a streaming job. On the DirectRunner the job runs in this process until it is
    cancelled, its reads not blocking and its per-bundle costs cut (see pipelines/direct_runner.py).
    On another runner (Dataflow) this returns once the job is submitted: a Flex Template launcher
    must exit after `run()`, or the launch never completes (https://cloud.google.com/dataflow/docs/guides/templates/configuring-flex-templates)."""
    options.view_as(StandardOptions).streaming = True
    direct = options.view_as(StandardOptions).runner in DIRECT_RUNNERS
    if direct:
        direct_runner.tune()
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    logging.getLogger("herald.pipeline").info(RUNNING_MARKER)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # logs every request at INFO
    result = pipeline.run()
    if direct:
        result.wait_until_finish()
