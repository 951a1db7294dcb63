"""The sandbox playing what happens after FCM accepted a push: the app's receipts, posted to a
plain local receiver standing in for Herald's POST /v1/receipts, and which export rows it writes
(to a plain list here; on the BigQuery emulator in tests/fcm_export_test.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import requests

from herald.contracts import Channel, Platform
from herald.providers.base import Outgoing
from herald.providers.fcm.sender import FcmSender
from herald.receipts import ReceiptKey
from herald.sandbox import SandboxServer
from herald.sandbox.push_outcomes import APP, AcceptedPush
from herald.providers.fcm.export import ExportEvent, SdkPlatform

KEY = ReceiptKey(b"test-receipt-key", 3600)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A URL that answers 204 to every POST, and the JSON bodies it got."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/receipts", got
    server.shutdown()
    server.server_close()


def _send(sandbox: SandboxServer, count: int,
          platforms: tuple[Platform, ...] = (Platform.IOS,)) -> list[Outgoing]:
    sender = FcmSender("herald-local", sandbox.url, app_name=f"outcomes-{time.monotonic_ns()}",
                       receipts=KEY)
    pushes = [Outgoing(f"{n:016x}", f"n-{n}", Channel.PUSH, f"tok-{n}", "T", "C",
                       platform=platforms[n % len(platforms)]) for n in range(count)]
    try:
        assert all(result.ok for result in sender.send(pushes))
    finally:
        sender.close()
    return pushes


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_app_posts_the_receipt_token_its_push_carried(receiver):
    url, got = receiver
    config = {"fcm": {"received": 1.0, "opened": 1.0, "receipt_delay_ms": 10}}
    with SandboxServer(latency_ms=0, config=config, receipts_url=url) as sandbox:
        pushes = _send(sandbox, 5)
        _wait_for(lambda: len(got) == 10)
        recorded = requests.get(f"{sandbox.url}/_callbacks", timeout=5).json()["callbacks"]

    assert {(KEY.verify(body["token"]), body["event"]) for body in got} == {
        (push.span_id, event) for push in pushes for event in ("received", "opened")}
    assert all(body["at"].endswith("Z") for body in got)
    assert sorted(json.dumps(c["payload"]) for c in recorded if c["provider"] == APP) == sorted(
        json.dumps(body) for body in got)
    assert {c["status"] for c in recorded} == {204}


def test_a_configured_share_of_pushes_get_receipts(receiver):
    url, got = receiver
    config = {"seed": 3, "fcm": {"received": 0.5, "opened": 0.0, "receipt_delay_ms": 10}}
    with SandboxServer(latency_ms=0, config=config, receipts_url=url) as sandbox:
        _send(sandbox, 40)
        time.sleep(0.5)

    assert 8 < len(got) < 32 and {body["event"] for body in got} == {"received"}


def test_an_fcm_message_is_read_for_its_platform_priority_and_receipt():
    push = AcceptedPush.of("projects/p/messages/0:1%a", "tok", {
        "token": "tok", "notification": {"title": "T"}, "android": {"priority": "high"},
        "data": {"receipt": "r"}, "fcm_options": {"analytics_label": "security"}})
    unknown = AcceptedPush.of("projects/p/messages/0:2%b", "tok", {
        "token": "tok", "android": {}, "apns": {}, "webpush": {}})

    assert (push.platform, push.priority, push.display, push.receipt, push.analytics_label) == (
        SdkPlatform.ANDROID, 10, True, "r", "security")
    assert (unknown.platform, unknown.priority, unknown.display, unknown.receipt) == (
        SdkPlatform.UNKNOWN, 5, False, None)


@pytest.mark.parametrize(("config", "delivering"), [
    ({}, {"ANDROID"}),
    ({"delivered_ios": 1.0, "delivered_web": 1.0}, {"ANDROID", "IOS", "WEB"}),
    ({"delivered": 0.0, "delivered_ios": 1.0}, {"IOS"}),
])
def test_the_export_reports_delivery_from_the_platforms_whose_apps_enabled_it(config, delivering):
    """By default only Android apps export delivery (Herald's dbt var fcm_export_platforms says
    android); iOS and web apps can enable it too, and the sandbox can play that."""
    rows: list[dict[str, Any]] = []
    faults = {"delivered": 1.0, "export_delay_ms": 10, **config}
    with SandboxServer(latency_ms=0, config={"fcm": faults},
                       fcm_export=lambda batch: rows.extend(batch) or []) as sandbox:
        _send(sandbox, 6, (Platform.ANDROID, Platform.IOS, Platform.WEB))
        _wait_for(lambda: len(sandbox.push_outcomes.written()) == 6 + 2 * len(delivering))
        time.sleep(0.1)  # nothing more comes
        written = sandbox.push_outcomes.written()

    assert written == rows
    assert sum(row["event"] == ExportEvent.MESSAGE_ACCEPTED for row in rows) == 6
    assert {row["sdk_platform"] for row in rows
            if row["event"] == ExportEvent.MESSAGE_DELIVERED} == delivering
    assert len(rows) == 6 + 2 * len(delivering)
