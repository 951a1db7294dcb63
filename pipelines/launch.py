"""Running a Herald streaming job: the same for the delivery and the callbacks pipelines."""

from __future__ import annotations

import logging
from typing import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.heartbeat import start_heartbeat

HEARTBEAT_S = 1.0
RUNNING_MARKER = "herald pipeline constructed; running"
"""Logged once the graph is built: `herald local up` waits for it, so a construction error fails `up`."""
DIRECT_RUNNERS = (None, "DirectRunner", "BundleBasedDirectRunner")


def run_streaming(options: PipelineOptions, build: Callable[[beam.Pipeline], None],
                  heartbeat_topic: str) -> None:
    """Build and run a streaming job until it is cancelled; on the DirectRunner, with a heartbeat
    on the topic it reads (see pipelines/heartbeat.py)."""
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    heartbeat = None
    if options.view_as(StandardOptions).runner in DIRECT_RUNNERS:
        heartbeat = start_heartbeat(heartbeat_topic, HEARTBEAT_S)
    logging.getLogger("herald.pipeline").info(RUNNING_MARKER)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # logs every request at INFO
    try:
        pipeline.run().wait_until_finish()
    finally:
        if heartbeat:
            heartbeat.set()
