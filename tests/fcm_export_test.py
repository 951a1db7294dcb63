"""FCM's BigQuery export, end to end on the BigQuery emulator: the sandbox's FCM accepts pushes
sent by Herald's FcmSender, writes export rows in FCM's documented shape into the emulator's
table, and dbt gives exactly the Android pushes the export reports delivered a delivered_at from
FCM's record (joined by FCM's message id), and no iOS or web push."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from herald import events
from herald.clients import bigquery_client, state_client
from herald.contracts import Channel, Platform
from herald.events import Status
from herald.providers.base import Outgoing
from herald.providers.fcm import export
from herald.providers.fcm.sender import FcmSender
from herald.sandbox.server import SandboxServer
from herald.status import FcmExportSync, StatusStore

if TYPE_CHECKING:
    from conftest import Story, Warehouse

PUSHES = 24


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_android_pushes_get_delivered_at_from_the_export_the_sandbox_wrote(
        warehouse: Warehouse, new_story: Story, firestore_emulator: str) -> None:
    dataset = "herald_fcm_export"
    settings = warehouse.load(dataset, [])
    client = bigquery_client(settings)
    config = {"seed": 15, "fcm": {"delivered": 0.5, "export_delay_ms": 20}}
    platforms = [Platform.ANDROID, Platform.IOS, Platform.WEB]
    with SandboxServer(latency_ms=0, config=config, fcm_export=lambda rows: client.insert_rows_json(
            settings.fcm_export_table_id, rows)) as sandbox:
        sender = FcmSender("herald-local", sandbox.url, app_name="fcm-export-test")
        try:
            for n in range(PUSHES):
                envelope = new_story.request(Channel.PUSH, datetime(2026, 11, 2, 9, n,
                                                                    tzinfo=timezone.utc))
                platform = platforms[n % 3]
                address = f"token-{n}"
                span_id = events.span_for(envelope.trace_id, Channel.PUSH.value, address)
                [result] = sender.send([Outgoing(
                    span_id, envelope.request.notification_id, Channel.PUSH, address, "Parcel",
                    "On its way", platform=platform)])
                assert result.ok
                new_story.delivery(envelope, address, Status.SENT, 100, platform=platform.value,
                                   device_id=address,
                                   provider_message_id=result.provider_message_id)
        finally:
            sender.close()
        # every push accepted, then half of the Android ones delivered (seeded draws)
        _wait_for(lambda: sum(row["event"] == export.ExportEvent.MESSAGE_ACCEPTED
                              for row in sandbox.push_outcomes.written()) == PUSHES)
        time.sleep(0.5)  # the last delivered rows are due one delay after their accepted rows
        written = sandbox.push_outcomes.written()

    delivered_ids = {row["message_id"] for row in written
                     if row["event"] == export.ExportEvent.MESSAGE_DELIVERED}
    assert 0 < len(delivered_ids) < PUSHES // 3
    assert {row["sdk_platform"] for row in written
            if row["event"] == export.ExportEvent.MESSAGE_DELIVERED} == {"ANDROID"}
    stored = warehouse.query(dataset, f"select message_id, event, sdk_platform from "
                                      f"`{settings.fcm_export_table_id}`")
    assert sorted((r["message_id"], r["event"]) for r in stored) == sorted(
        (r["message_id"], r["event"]) for r in written)

    assert client.insert_rows_json(settings.events_table, new_story.rows) == []
    run = warehouse.dbt(dataset, "run", "--select", "stg_herald__events",
                        "stg_fcm__message_events", "int_deliveries")
    assert run.success and not run.problems(), run.problems()
    deliveries = warehouse.query(dataset, f"select platform, provider_message_id, final_status, "
                                          f"delivered_at, fcm_delivered_at "
                                          f"from `{dataset}.int_deliveries`")
    assert len(deliveries) == PUSHES
    confirmed = {export.message_id(row["provider_message_id"]) for row in deliveries
                 if row["fcm_delivered_at"] is not None}
    assert confirmed == delivered_ids
    for row in deliveries:
        assert (row["final_status"] == "delivered") == (row["fcm_delivered_at"] is not None)
        assert row["delivered_at"] == row["fcm_delivered_at"]
        if row["platform"] != "android":
            assert row["fcm_delivered_at"] is None

    # The status API's store learns the same from one BigQuery query (the scheduled sync).
    store = StatusStore(state_client(settings), timedelta(days=1))
    store.record(new_story.rows)
    sync = FcmExportSync(client, store, settings.events_table, settings.fcm_export_table_id,
                         lookback=timedelta(days=36500))
    assert sync.run().startswith(f"{len(delivered_ids)} pushes")
    shown = {}
    for row in deliveries:
        notification = next(e["notification_id"] for e in new_story.rows
                            if e.get("provider_message_id") == row["provider_message_id"])
        [delivery] = store.lookup("shop", notification)["deliveries"]
        shown[export.message_id(row["provider_message_id"])] = delivery["status"]
    assert {m for m, status in shown.items() if status == "delivered"} == delivered_ids
