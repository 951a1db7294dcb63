"""Shared pytest fixtures: the real emulators, on free ports, stopped after the session; and a
streaming pipeline whose processing clock runs, for steps on AsyncWrapper's pool.

At the repo root so tests beside their modules (`*_test.py`) and in `tests/` share them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream

from herald.local import processes, stack
from herald.local.processes import Service, free_port, http_ready, tcp_ready

EMULATOR_FIXTURES = frozenset({"pubsub_emulator", "firestore_emulator", "local_stack", "warehouse"})
"""Fixtures that start Google's emulators (or the whole local stack, or the BigQuery emulator
with dbt). A test depending on one, directly or through another fixture, is marked `emulators`;
`make test-fast` leaves those and the `slow` ones out."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EMULATOR_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulators)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PUBSUB_EMULATOR_HOST of a private Pub/Sub emulator, also set in os.environ."""
    processes.require_cloud_sdk_emulators()
    port = free_port()
    process = processes.start(
        Service("pubsub-emulator", [str(processes.PUBSUB_EMULATOR), "--host=127.0.0.1",
                                    f"--port={port}"], tcp_ready(port)),
        tmp_path_factory.mktemp("pubsub-logs"))
    host = f"127.0.0.1:{port}"
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    yield host
    processes.stop_group(process.pid)
    if previous is None:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FIRESTORE_EMULATOR_HOST of a private Firestore emulator, also set in os.environ."""
    processes.require_cloud_sdk_emulators()
    port = free_port()
    process = processes.start(
        Service("firestore-emulator", [str(processes.FIRESTORE_EMULATOR), "start",
                                       "--host=127.0.0.1", f"--port={port}"],
                http_ready(f"http://127.0.0.1:{port}/")),
        tmp_path_factory.mktemp("firestore-logs"))
    host = f"127.0.0.1:{port}"
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    yield host
    processes.stop_group(process.pid)
    os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The stack the end-to-end tests share. Tests that break things or leave traffic the shared
    tests would count (faults, kills, replays) start their own with `stack.running`."""
    with stack.running(tmp_path_factory.mktemp("herald-state")) as env:
        yield env


Streamed = Callable[[list[Any], Callable[[beam.PCollection], None]], None]


@pytest.fixture
def streamed() -> Streamed:
    """`streamed(elements, build)`: the elements through a streaming DirectRunner pipeline that
    `build(pcollection)` extends, its processing clock moved past the wall clock. AsyncWrapper
    (the send steps, and the write steps with WriteBatching.concurrency) emits what its pool
    finished on a processing-time timer: in a batch pipeline, or with the test clock left at the
    epoch, the runner stops before that timer is due and the outputs never come."""
    def run(elements: list[Any], build: Callable[[beam.PCollection], None]) -> None:
        options = PipelineOptions()
        options.view_as(StandardOptions).streaming = True
        stream = (TestStream().add_elements(elements).advance_watermark_to(10)
                  .advance_processing_time(int(time.time()) + 3600)
                  .advance_processing_time(60).advance_watermark_to_infinity())
        with TestPipeline(options=options) as pipeline:
            build(pipeline | stream)
    return run
