"""What happens to a push after FCM accepted it, played locally: FCM's BigQuery export rows and
the app's receipts.

FCM calls nobody back. What Herald can learn later comes from FCM's BigQuery export of message
delivery data (herald/providers/fcm/export.py): a MESSAGE_ACCEPTED row for every message and,
from apps that enabled delivery data export (Android by default; iOS and web when configured:
`FcmFaults.delivered_ios`, `delivered_web`), a MESSAGE_DELIVERED row once the device's FCM SDK
got it; and from the app, which
posts the push's receipt token back (herald/receipts.py) when the push is received and opened.
For each push the sandbox accepts it draws the outcomes (`FcmFaults`: delivered, received,
opened) and, once due, writes the export rows in the documented shape into the configured table
(the BigQuery emulator in the local stack), batched, and posts the receipts to Herald's
`POST /v1/receipts`, from one worker thread. What was written (`GET /_fcm_export`) and posted
(`GET /_callbacks`, provider "app") is the ground truth the marts are checked against.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import requests

from herald.contracts import utc_now_iso
from herald.providers.fcm import export
from herald.providers.fcm.limits import RECEIPT_DATA_KEY
from herald.sandbox.faults import Dice, FcmFaults
from herald.sandbox.ledger import Ledger, SentCallback

logger = logging.getLogger(__name__)

APP_NAME = "com.herald.sandbox"
APP = "app"
"""The `provider` the ledger records the app's receipt posts under."""
RECEIPT_TIMEOUT_S = 5.0
MAX_BATCH_ROWS = 500
"""Rows per insert: a streaming insert request stays well under BigQuery's 10 MB."""

ExportSink = Callable[[list[dict[str, Any]]], Sequence[Any]]
"""Inserts rows into the export table; returns the per-row errors (google-cloud-bigquery's
`insert_rows_json` bound to the table), empty when all went in."""


@dataclass(frozen=True)
class AcceptedPush:
    """A push the sandbox's FCM accepted, with what its export rows carry."""

    name: str
    """The send answer's name, projects/<project>/messages/<id>."""
    token: str
    platform: export.SdkPlatform
    priority: int
    """5 normal, 10 high, as the export records it."""
    display: bool
    analytics_label: str | None
    receipt: str | None = None
    """The receipt token in the push's data, which the app posts back."""

    @classmethod
    def of(cls, name: str, token: str, message: dict[str, Any]) -> AcceptedPush:
        """Read an FCM HTTP v1 `message`: its platform from the one platform block it carries
        (Herald sends all three when it does not know the device's: UNKNOWN), its priority from
        that block's."""
        blocks = {platform: block for platform, key in (
            (export.SdkPlatform.ANDROID, "android"), (export.SdkPlatform.IOS, "apns"),
            (export.SdkPlatform.WEB, "webpush")) if isinstance(block := message.get(key), dict)}
        platform = next(iter(blocks)) if len(blocks) == 1 else export.SdkPlatform.UNKNOWN
        high = (blocks.get(export.SdkPlatform.ANDROID, {}).get("priority") == "high"
                or blocks.get(export.SdkPlatform.IOS, {}).get("headers", {}).get(
                    "apns-priority") == "10"
                or blocks.get(export.SdkPlatform.WEB, {}).get("headers", {}).get(
                    "Urgency") == "high")
        options = message.get("fcm_options")
        data = message.get("data")
        return cls(name, token, platform, 10 if high else 5,
                   isinstance(message.get("notification"), dict),
                   options.get("analytics_label") if isinstance(options, dict) else None,
                   data.get(RECEIPT_DATA_KEY) if isinstance(data, dict) else None)

    def row(self, event: export.ExportEvent, project: str) -> dict[str, Any]:
        return export.export_row(
            event=event, at=utc_now_iso(), name=self.name,
            project_number=zlib.crc32(project.encode()),
            instance_id=hashlib.sha256(self.token.encode()).hexdigest()[:22],
            platform=self.platform, app_name=APP_NAME, priority=self.priority,
            display=self.display, analytics_label=self.analytics_label)


class PushOutcomes:
    """Draws each accepted push's outcomes and acts on them once due: export rows go to `sink`
    (None: no BigQuery to write to, none are written), receipts to `receipts_url` (None: the app
    posts none), each post recorded in `ledger`."""

    def __init__(self, project: str, dice: Dice, ledger: Ledger, sink: ExportSink | None,
                 receipts_url: str | None) -> None:
        self._project = project
        self._dice = dice
        self._ledger = ledger
        self._sink = sink
        self._receipts_url = receipts_url
        self._due: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._written: list[dict[str, Any]] = []
        self._worker = threading.Thread(target=self._work, name="herald-sandbox-push-outcomes",
                                        daemon=True)
        self._worker.start()

    def schedule(self, push: AcceptedPush, faults: FcmFaults) -> None:
        """Queue the push's MESSAGE_ACCEPTED row and its MESSAGE_DELIVERED row when drawn (at its
        platform's share, `FcmFaults.delivered_share`); its `received` receipt when drawn, then
        its `opened` one."""
        due: list[tuple[float, dict[str, Any]]] = []
        if self._sink is not None:
            step_s = faults.export_delay_ms / 1000
            due.append((step_s, push.row(export.ExportEvent.MESSAGE_ACCEPTED, self._project)))
            share = faults.delivered_share(push.platform)
            if share and self._dice.chance(share):  # a platform whose share is 0 takes no draw
                due.append((2 * step_s, push.row(export.ExportEvent.MESSAGE_DELIVERED,
                                                  self._project)))
        if self._receipts_url and push.receipt and self._dice.chance(faults.received):
            step_s = faults.receipt_delay_ms / 1000
            due.append((step_s, {"token": push.receipt, "event": "received"}))
            if self._dice.chance(faults.opened):
                due.append((2 * step_s, {"token": push.receipt, "event": "opened"}))
        now = time.monotonic()
        with self._ready:
            for delay, item in due:
                heapq.heappush(self._due, (now + delay, next(self._order), item))
            self._ready.notify()

    def written(self) -> list[dict[str, Any]]:
        """Every export row the sink took, in order (timestamped when written)."""
        with self._ready:
            return list(self._written)

    def close(self) -> None:
        """Stop the worker; what is not yet due is dropped."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._worker.join(5)

    def _take_due(self) -> list[dict[str, Any]] | None:
        with self._ready:
            while not self._closed:
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is not None and wait <= 0:
                    batch = []
                    while (self._due and self._due[0][0] <= time.monotonic()
                           and len(batch) < MAX_BATCH_ROWS):
                        batch.append(heapq.heappop(self._due)[2])
                    return batch
                self._ready.wait(wait)
            return None

    def _work(self) -> None:
        with requests.Session() as session:
            while (batch := self._take_due()) is not None:
                receipts = [item for item in batch if "token" in item]
                self._export([item for item in batch if "token" not in item])
                for receipt in receipts:
                    self._post(session, receipt)

    def _export(self, rows: list[dict[str, Any]]) -> None:
        if not rows or self._sink is None:
            return
        for row in rows:  # stamped when written, as FCM stamps when it records
            row["event_timestamp"] = utc_now_iso()
        try:
            errors = self._sink(rows)
        except Exception as error:  # the emulator down: logged, the rows are not recorded
            logger.warning("FCM export insert of %d rows failed: %s", len(rows), error)
            return
        if errors:
            logger.warning("FCM export refused rows: %s", errors)
            return
        with self._ready:
            self._written.extend(rows)

    def _post(self, session: requests.Session, receipt: dict[str, Any]) -> None:
        """POST the receipt as the app would, `at` being now; the answer is recorded, not acted
        on (an app would retry; the sandbox's record is what Herald was told)."""
        assert self._receipts_url is not None
        payload = {**receipt, "at": utc_now_iso()}
        try:
            status: int | None = session.post(self._receipts_url, json=payload,
                                              timeout=RECEIPT_TIMEOUT_S).status_code
        except requests.RequestException as error:
            logger.debug("receipt post to %s failed: %s", self._receipts_url, error)
            status = None
        self._ledger.record_callback(SentCallback(APP, self._receipts_url, payload, status,
                                                  False, False, utc_now_iso()))
