"""The pipeline benchmark's baseline: a bare Beam job that only reads a Pub/Sub subscription and counts.

ReadFromPubSub (with attributes, as Herald's pipeline reads) on the streaming DirectRunner, tuned
as Herald's pipelines run it (pipelines/direct_runner.py) -> count. No parsing, no Firestore, no
sends, no BigQuery: the rate this reaches on a pre-filled subscription is the ceiling the runner
and the Pub/Sub read put on any pipeline on this machine, and `herald bench` reports Herald's
delivered rate as a share of it.

    PUBSUB_EMULATOR_HOST=127.0.0.1:8085 python bench/bare_read_pipeline.py \
        --subscription projects/herald-local/subscriptions/bench-bare-read --expect 20000

Prints one JSON line per second while reading and a final one, then exits (a streaming job never
finishes by itself): when `--expect` messages were counted, after `--idle_s` without a new one
once reading started, or at `--timeout_s`. The rate is counted from the first message to the last;
`rate_incl_startup_per_s` counts from job submission.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import types

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import direct_runner

COUNTER_MODULE = "_herald_bare_read_counter"
"""The count lives in a registered module, not in this script's globals: Beam pickles DoFns, and
an unpickled copy of a `__main__` class may not share `__main__`'s globals."""


def _counter() -> types.ModuleType:
    counter = sys.modules.get(COUNTER_MODULE)
    if counter is None:
        counter = types.ModuleType(COUNTER_MODULE)
        counter.lock, counter.count, counter.first, counter.last = threading.Lock(), 0, None, None
        sys.modules[COUNTER_MODULE] = counter
    return counter


class CountMessages(beam.DoFn):
    def process(self, message):
        counter = _counter()
        now = time.time()
        with counter.lock:
            counter.count += 1
            counter.last = now
            if counter.first is None:
                counter.first = now


def snapshot(submitted: float, final: bool) -> dict:
    counter = _counter()
    with counter.lock:
        count, first, last = counter.count, counter.first, counter.last
    reading = (last - first) if first is not None and last is not None else 0.0
    since_submit = (last - submitted) if last is not None else 0.0
    return {"final": final, "count": count,
            "reading_s": round(reading, 3),
            "rate_per_s": round((count - 1) / reading, 1) if reading > 0 else None,
            "rate_incl_startup_per_s": round(count / since_submit, 1) if since_submit > 0 else None}


def watch(submitted: float, expect: int, idle_s: float, timeout_s: float) -> None:
    """Print progress every second; exit the process when done (the job itself never ends)."""
    counter = _counter()
    while True:
        time.sleep(1.0)
        now = time.time()
        done = counter.count >= expect
        idle = counter.last is not None and now - counter.last >= idle_s
        late = now - submitted >= timeout_s
        if done or idle or late:
            result = snapshot(submitted, final=True)
            result["stopped_by"] = "expected count" if done else "idle" if idle else "timeout"
            print(json.dumps(result), flush=True)
            os._exit(0 if done else 1)
        print(json.dumps(snapshot(submitted, final=False)), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscription", required=True, help="full path projects/P/subscriptions/S")
    parser.add_argument("--expect", type=int, required=True, help="stop after this many messages")
    parser.add_argument("--idle_s", type=float, default=20.0)
    parser.add_argument("--timeout_s", type=float, default=300.0)
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    direct_runner.tune()  # the runner as Herald's pipelines run on it (pulls of 100, not 10)
    pipeline = beam.Pipeline(options=options)
    (pipeline
     | "ReadRequests" >> beam.io.ReadFromPubSub(subscription=args.subscription,
                                                with_attributes=True)
     | "Count" >> beam.ParDo(CountMessages()))
    _counter()
    submitted = time.time()
    threading.Thread(target=watch, args=(submitted, args.expect, args.idle_s, args.timeout_s),
                     daemon=True).start()
    pipeline.run().wait_until_finish()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
