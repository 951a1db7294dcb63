"""A 1 s heartbeat on the requests topic, for the DirectRunner only.

The streaming DirectRunner runs every step on one thread, and its Pub/Sub read blocks in a pull
for up to 30 s when the subscription is idle. Processing-time timers (batch flushes) cannot fire
during that pull, so the last partial batches would wait up to 30 s. A small message every second
ends the pull; the parser drops it (counted). Dataflow has no such limit and runs without it.
"""

from __future__ import annotations

import logging
import threading

from google.cloud import pubsub_v1

from herald.contracts import HEARTBEAT_ATTRIBUTE

log = logging.getLogger("herald.pipeline.heartbeat")


def start_heartbeat(topic_path: str, interval_s: float) -> threading.Event:
    """Publish a heartbeat every `interval_s` from a daemon thread until the returned event is set."""
    stop = threading.Event()
    publisher = pubsub_v1.PublisherClient()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                publisher.publish(topic_path, b"{}", **{HEARTBEAT_ATTRIBUTE: "1"}).result(timeout=10)
            except Exception as error:  # noqa: BLE001 - a missed beat only delays a flush
                log.warning("heartbeat publish failed: %s", error)

    threading.Thread(target=beat, name="herald-heartbeat", daemon=True).start()
    return stop
