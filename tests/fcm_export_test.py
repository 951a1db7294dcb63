"""FCM's BigQuery export on the BigQuery emulator: end to end, the sandbox's FCM accepts pushes
sent by Herald's FcmSender, writes export rows in FCM's documented shape into the emulator's
table, and dbt gives exactly the Android pushes the export reports delivered a delivered_at from
FCM's record (joined by FCM's message id), and no iOS or web push (their apps have not enabled
delivery export, the sandbox's default); the staging model reads rows written from Firebase's
documentation (tests/fixtures/providers/fcm/export); the local table is partitioned by ingestion
time, as FCM's is, with the emulator's gap."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from herald import events
from herald.clients import bigquery_client, state_client
from herald.contracts import Channel, Platform
from herald.events import Status
from herald.providers import contract_fixtures
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


def test_the_staging_model_reads_the_export_rows_as_the_docs_describe(
        warehouse: Warehouse) -> None:
    """tests/fixtures/providers/fcm/export: rows written from Firebase's schema table (accepted
    and delivered on Android and iOS, a topic send, a rejection, a message_id two instances
    share), one of them loaded twice, staged one row per (message_id, instance_id, event)."""
    fixtures = contract_fixtures.load("fcm", "export")
    rows = [row for fixture in fixtures.values() for row in fixture["rows"]]
    assert {field.name for field in export.EXPORT_FIELDS} == {key for row in rows for key in row}
    assert {row["event"] for row in rows} <= set(export.ExportEvent)
    assert {row["message_type"] for row in rows} <= set(export.MessageType)
    dataset = "herald_fcm_export_docs"
    warehouse.load(dataset, [], [*rows, fixtures["delivered_android"]["rows"][-1]])
    run = warehouse.dbt(dataset, "build", "--select", "stg_fcm__message_events")
    assert run.success and not run.problems(), run.problems()

    staged = warehouse.query(dataset, f"select * from `{dataset}.stg_fcm__message_events`")
    assert sorted((r["message_id"], r["instance_id"] or "", r["event"], r["is_rejection"])
                  for r in staged) == sorted(
        (message_id, instance_id or "", event, rejection) for fixture in fixtures.values()
        for message_id, instance_id, event, rejection in fixture["expected"]["staged"])
    [topic] = [r for r in staged if r["message_type"] == export.MessageType.TOPIC]
    assert (topic["topic"], topic["bulk_id"], topic["instance_id"]) == ("deals", 4242424242, None)
    [ios] = [r for r in staged if r["sdk_platform"] == "IOS"
             and r["event"] == export.ExportEvent.MESSAGE_DELIVERED]
    assert (ios["priority"], ios["ttl_s"], ios["event_ts"]) == (
        5, 3600, datetime(2026, 11, 2, 10, 15, 0, 950000, tzinfo=timezone.utc))
    assert all(r["partition_time"] is not None for r in staged)


def test_the_local_export_table_is_partitioned_by_ingestion_time(warehouse: Warehouse) -> None:
    """The local stack creates the export table as FCM's is: partitioned by ingestion time, by
    day, on no column. The gap: the BigQuery emulator keeps no load time per row and reads
    _PARTITIONTIME as the query's current time (on BigQuery it is the start of the UTC day the
    row was loaded), so locally every row reads as loaded now."""
    dataset = "herald_fcm_export_partitions"
    settings = warehouse.load(dataset, [], [export.export_row(
        event=export.ExportEvent.MESSAGE_ACCEPTED, at="2026-11-02T09:00:00Z", name="0:1%a",
        project_number=1, instance_id="i-1", platform=export.SdkPlatform.ANDROID,
        app_name="com.herald.test", priority=10, display=True, analytics_label=None)])
    table = bigquery_client(settings).get_table(settings.fcm_export_table_id)
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", None)

    before = datetime.now(timezone.utc)
    [row] = warehouse.query(dataset, f"select {export.PARTITION_PSEUDO_COLUMN} as loaded "
                                     f"from `{settings.fcm_export_table_id}`")
    after = datetime.now(timezone.utc)
    assert before - timedelta(seconds=1) <= row["loaded"] <= after + timedelta(seconds=1)
