"""The delivery benchmark's peer: the worker a team would write without Herald.

The same libraries and the same local stack, the plain way: a google-cloud-pubsub streaming-pull
subscriber, with flow control and the library's callback thread pool, that for each request
reads the user and the devices from Firestore (the layout of herald/users.py), applies the same
opt-out rules (`pipelines.recipients.plan_deliveries`, Herald's own planning, so both decide the
same deliveries), calls the same provider SDK senders (herald/providers, built by
`pipelines.send.build_sender`) one delivery at a time, and streams a row per send into BigQuery
(`insert_rows_json`, buffered up to `--rows` rows or `--flush-s` seconds). It acknowledges a
message once its sends are done.

No dedupe, no claims, no retries beyond the SDKs' own: a redelivered message is sent again, a
failed send is recorded failed. That is what the faults part's duplicates and losses show.

    PUBSUB_EMULATOR_HOST=... FIRESTORE_EMULATOR_HOST=... BIGQUERY_API_ENDPOINT=... \\
    python bench/peer_worker.py --subscription projects/herald-local/subscriptions/peer

It logs PEER_READY once subscribed (the bench waits for it) and stops on SIGTERM or SIGINT,
flushing its buffered rows.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from herald import users
from herald.clients import bigquery_client, firestore_client, state_client
from herald.contracts import Channel, Envelope
from herald.events import Status
from herald.providers.base import Sender
from herald.settings import Settings
from herald.templates import TemplateStore
from pipelines.delivery import Delivery
from pipelines.recipients import plan_deliveries
from pipelines.send import build_sender

PEER_READY = "peer worker subscribed; running"
log = logging.getLogger("herald.bench.peer_worker")


class RowBuffer:
    """Rows for BigQuery's streaming insert, sent when `rows` are waiting or every `flush_s`."""

    def __init__(self, settings: Settings, rows: int, flush_s: float) -> None:
        self._client = bigquery_client(settings)
        self._table = settings.events_table
        self._rows, self._flush_s = rows, flush_s
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._timer, name="peer-bq-flush", daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(row)
            full = len(self._buffer) >= self._rows
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            errors = self._client.insert_rows_json(self._table, rows)
            if errors:
                log.error("BigQuery refused %d of %d rows: %s", len(errors), len(rows), errors[:3])
        except Exception:  # noqa: BLE001 - a team's worker logs and goes on
            log.exception("BigQuery insert of %d rows failed", len(rows))

    def _timer(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()


class PeerWorker:
    """What the subscriber's callback does with one message."""

    def __init__(self, settings: Settings, rows: RowBuffer) -> None:
        self._settings = settings
        self._firestore = firestore_client(settings)
        self._templates = TemplateStore(state_client(settings))
        self._senders: dict[Channel, Sender] = {channel: build_sender(channel, settings)
                                                for channel in Channel}
        self._rows = rows

    def _lookup(self, user_id: str, channel: Channel) -> tuple[dict | None, dict[str, dict]]:
        snapshot = users.user_ref(self._firestore, user_id).get()
        if not snapshot.exists:
            return None, {}
        devices = {}
        if channel is Channel.PUSH:
            devices = {doc.id: doc.to_dict() for doc in users.user_ref(
                self._firestore, user_id).collection(users.DEVICES).stream()}
        return snapshot.to_dict(), devices

    def _send(self, delivery: Delivery) -> None:
        if delivery.envelope.request.templated:
            delivery = delivery.render(self._templates)
        [result] = self._senders[delivery.channel].send([delivery.outgoing()])
        if result.ok:
            row = delivery.event(Status.SENT, provider_message_id=result.provider_message_id,
                                 attempts=1, event_ts=result.at)
        else:
            row = delivery.event(Status.FAILED, provider_code=result.error_code, attempts=1,
                                 event_ts=result.at)
        self._rows.add(row)

    def __call__(self, message: pubsub_v1.subscriber.message.Message) -> None:
        try:
            envelope = Envelope.from_pubsub(message.data, message.attributes)
            for user_id in envelope.request.recipient_ids:
                user, devices = self._lookup(user_id, envelope.request.channel)
                for delivery, reason in plan_deliveries(envelope, user_id, user, devices,
                                                        self._settings.hash_key):
                    if reason is None:
                        self._send(delivery)
        except Exception:  # noqa: BLE001 - a team's worker logs, and acks so it is not redelivered forever
            log.exception("message %s failed", message.message_id)
        message.ack()

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscription", action="append", required=True,
                        help="a subscription path to pull (repeat for more)")
    parser.add_argument("--threads", type=int, default=32,
                        help="callback threads (the subscriber's ThreadScheduler pool)")
    parser.add_argument("--max-messages", type=int, default=64,
                        help="flow control: messages leased and not yet acknowledged")
    parser.add_argument("--rows", type=int, default=500, help="rows per BigQuery insert at most")
    parser.add_argument("--flush-s", type=float, default=0.5, help="longest a row waits")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    settings = Settings.from_env()
    rows = RowBuffer(settings, args.rows, args.flush_s)
    worker = PeerWorker(settings, rows)
    subscriber = pubsub_v1.SubscriberClient()
    flow = pubsub_v1.types.FlowControl(max_messages=args.max_messages)
    pool = ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="peer-callback")
    futures = [subscriber.subscribe(path, worker, flow_control=flow,
                                    scheduler=ThreadScheduler(pool))
               for path in args.subscription]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    log.info(PEER_READY)
    stop.wait()
    for future in futures:
        future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
    rows.close()
    worker.close()
    subscriber.close()


if __name__ == "__main__":
    main()
