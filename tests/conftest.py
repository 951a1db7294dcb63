"""A private BigQuery emulator with the dbt project built on a small fixed story of events.

Shared by tests/dbt_models_test.py (which checks the marts against answers worked out by hand),
tests/notebook_test.py and tests/report_test.py (which read those marts). The emulator starts once
per session, on free ports, and is stopped (its whole process group) afterwards; `built` inserts
the story into its own dataset and runs `dbt build` (models, unit tests and data tests) once.

The story (rows built with herald.events, so they have the pipeline's shape):

Day 1, 2026-11-02, sender "shop", category parcel_update unless said otherwise
  push   7 requests x 3 devices (android, ios, web), all sent (21 latencies in PUSH_LATENCIES_MS);
         1 request x 2 devices: one suppressed (device_disabled), one failed (no_address). One
         sent event inserted twice. FCM calls nothing back; FCM's BigQuery export (its own table)
         has MESSAGE_ACCEPTED for the Android pushes of requests 1-6 and MESSAGE_DELIVERED for
         requests 1-5 (FCM_DELIVERED_MS after the send: 1-5 s); apps' receipts (RECEIPTS): iOS
         of request 1 received at 600 ms and opened, iOS of request 2 received at 800 ms, web of
         request 3 opened only, Android of request 4 received at 4.5 s (after FCM's 4 s); the
         first receipt posted twice. So 8 pushes delivered (5 Android by FCM, one of them with a
         receipt too; 2 iOS, 1 web by receipt), 2 opened, 10 confirmable (7 Android, and the 3
         iOS and web devices that sent receipts), 11 unknown.
  sms    sms1 sent 700 ms: delivered reported at 3.7 s, provider_accepted at 5 s (out of order).
         sms2 sent 1500 ms: provider_accepted 2 s, undelivered (30005, unreachable) at 6.5 s,
         posted twice.
         sms3 accepted 23:59:59.5, sent 900 ms later (after midnight: still day 1), delivered 2.9 s.
         sms4 failed (provider_error 30003). sms5 duplicate.
         sms6 sent 1100 ms, delivered 6.1 s. sms7 sent 1300 ms, provider_accepted only.
         The accepted event of sms1 inserted twice.
  email  email1 sent 2000 ms: provider_accepted 2.5 s, delivered 5 s; opened (posted twice) and
         clicked the next day, then unsubscribed (an opted_out report, day 2).
         email2 suppressed (category_opted_out).
         email3 sent 1000 ms: delivered 4 s, then a hard bounce (5.1.1, Invalid Address) the next
         day.
         email4 sent 3000 ms: opened by a privacy proxy (machine open) 20 s, no delivered report.
         email5 sent 1500 ms: dropped ("Bounced Address", status 5.0.0) 1.6 s.
         email6, email7, email8 from sender "crm", category promotions:
         email6 sent 2500 ms: deferred 3 s, delivered 8.5 s. email7 sent 500 ms, delivered 1.5 s.
         email8 sent 12 s after acceptance (outside the 10 s SLO), provider_accepted 12.4 s,
         blocked (a soft bounce: 4.0.0, Reputation) 20 s.
  a STOP texted by the user of day 2's suppressed SMS (an opted_out report with no span).
  a dead letter (no trace, no parent): not a delivery.
  a delivered callback for a span Herald never sent, and one with no span id (a SendGrid message
  sent without Herald's custom args): not deliveries.
Day 2, 2026-11-03
  email  1 failed (unknown_user). sms 1 suppressed (provider_opted_out: the STOP of day 1), and an
         hour later the same user texts START (an opted_in report).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from herald import dbt_project, events
from herald.clients import bigquery_client
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Envelope, NotificationRequest, Platform
from herald.events import Reason, Status
from herald.local import processes
from herald.local.processes import Service, free_port, http_ready
from herald.local.provision import create_tables
from herald.providers.fcm import export
from herald.settings import Settings

PROJECT = "herald-local"
STORY_DATASET = "herald_dbt_test"
DAY_1 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
DAY_2 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)

PUSH_LATENCIES_MS = [140, 60, 300, 90, 210, 180, 75, 260, 120, 95, 150,
                     230, 110, 85, 170, 290, 130, 100, 200, 160, 250]
"""21 sent push deliveries. Sorted: 60 75 85 90 95 100 110 120 130 140 [150] 160 170 180 200 210
230 250 260 [290] [300]."""
FCM_DELIVERED_MS = {0: 1000, 1: 2000, 2: 3000, 3: 4000, 4: 5000}
"""Push request -> how long after its Android push was sent FCM's export reports it delivered."""
RECEIPTS = {(0, 1): ((Status.DELIVERED, 600), (Status.OPENED, 60_000)),
            (1, 1): ((Status.DELIVERED, 800),),
            (2, 2): ((Status.OPENED, 90_000),),
            (3, 0): ((Status.DELIVERED, 4500),)}
"""(push request, device: 0 android, 1 ios, 2 web) -> the app's receipts, ms after the send."""


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class Story:
    """Builds rows with herald.events, the way the pipeline does."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.fcm_rows: list[dict[str, Any]] = []
        self._requests = 0

    def fcm_export(self, sent: dict[str, Any], event: export.ExportEvent, after_ms: int) -> None:
        """FCM's export row `event` about a sent push, `after_ms` after it was sent."""
        at = datetime.fromisoformat(sent["event_ts"].replace("Z", "+00:00"))
        self.fcm_rows.append(export.export_row(
            event=event, at=iso(at + timedelta(milliseconds=after_ms)),
            name=sent["provider_message_id"], project_number=1, instance_id=sent["device_id"],
            platform=export.SdkPlatform(sent["platform"].upper()), app_name="com.herald.story",
            priority=5, display=True, analytics_label="other-01"))

    def request(self, channel: Channel, accepted: datetime, *, sender: str = "shop",
                category: str = "parcel_update") -> Envelope:
        self._requests += 1
        n = self._requests
        envelope = Envelope(
            request=NotificationRequest(
                user_id=f"user-{n}", notification_id=f"notification-{n}", service_type="parcels",
                category_type=category, channel=channel, template_type="out_for_delivery",
                title="Your parcel", content="is on its way"),
            trace_id=f"trace-{n:02d}", sender_client=sender, accepted_at=iso(accepted))
        self.rows.append(events.request_event(envelope, Status.ACCEPTED, event_ts=iso(accepted)))
        return envelope

    def delivery(self, envelope: Envelope, address: str, status: Status, after_ms: int,
                 **extra: Any) -> dict[str, Any]:
        """The delivery's event `status`, `after_ms` after the request was accepted (its terminal
        event, or a provider callback: same span, provider_message_id set)."""
        channel = envelope.request.channel
        accepted = datetime.fromisoformat(envelope.accepted_at.replace("Z", "+00:00"))
        span_id = events.span_for(envelope.trace_id, channel.value, address)
        at = iso(accepted + timedelta(milliseconds=after_ms))
        if status in events.CALLBACK:
            # As herald.callback_events records them: span, provider and what the provider
            # said, no request attributes.
            row = events.callback_event(
                span_id=span_id, status=status, occurred_at=at,
                notification_id=envelope.request.notification_id,
                provider=PROVIDER_BY_CHANNEL[channel], provider_message_id=f"msg-{span_id}",
                callback_id=f"{span_id}/{status.value}/{after_ms}", **extra)
        else:
            if status is Status.SENT:
                extra.setdefault("provider_message_id", f"msg-{span_id}")
            row = events.delivery_event(
                envelope, span_id, status, event_ts=at, provider=PROVIDER_BY_CHANNEL[channel],
                recipient_hash=f"hash-{address}", **extra)
        self.rows.append(row)
        return row


DAY_MS = 24 * 3600 * 1000


def story_rows() -> list[dict[str, Any]]:
    """The module docstring's story: 101 rows, 96 distinct events, 40 deliveries."""
    return _story()[0]


def story_fcm_rows() -> list[dict[str, Any]]:
    """The FCM export rows of the story's Android pushes (herald.providers.fcm.export)."""
    return _story()[1]


def _story() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    story = Story()
    platforms = [Platform.ANDROID, Platform.IOS, Platform.WEB]
    latencies = iter(PUSH_LATENCIES_MS)
    repeated_receipt = None
    for r in range(7):
        envelope = story.request(Channel.PUSH, DAY_1 + timedelta(minutes=r))
        for d in range(3):
            address, latency = f"device-{r}-{d}", next(latencies)
            sent = story.delivery(envelope, address, Status.SENT, latency, device_id=address,
                                  platform=platforms[d].value,
                                  provider_message_id=f"projects/{PROJECT}/messages/0:{r}{d}%f")
            if platforms[d] is Platform.ANDROID and r < 6:
                story.fcm_export(sent, export.ExportEvent.MESSAGE_ACCEPTED, 0)
                if r in FCM_DELIVERED_MS:
                    story.fcm_export(sent, export.ExportEvent.MESSAGE_DELIVERED,
                                     FCM_DELIVERED_MS[r])
            for status, after_ms in RECEIPTS.get((r, d), ()):
                receipt = story.delivery(envelope, address, status, latency + after_ms)
                repeated_receipt = repeated_receipt or receipt
    envelope = story.request(Channel.PUSH, DAY_1 + timedelta(hours=1))
    story.delivery(envelope, "device-off", Status.SUPPRESSED, 5, device_id="device-off",
                   platform=Platform.IOS.value, reason=Reason.DEVICE_DISABLED.value)
    story.delivery(envelope, "device-none", Status.FAILED, 5, device_id="device-none",
                   platform=Platform.ANDROID.value, reason=Reason.NO_ADDRESS.value)

    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=2))
    sms_accepted_twice = story.rows[-1]
    story.delivery(sms, "+15550000001", Status.SENT, 700)
    story.delivery(sms, "+15550000001", Status.DELIVERED, 3700)
    story.delivery(sms, "+15550000001", Status.PROVIDER_ACCEPTED, 5000)
    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=3))
    story.delivery(sms, "+15550000002", Status.SENT, 1500)
    story.delivery(sms, "+15550000002", Status.PROVIDER_ACCEPTED, 2000)
    undelivered = story.delivery(sms, "+15550000002", Status.UNDELIVERED, 6500,
                                 provider_code="30005", reason="unreachable")
    sms = story.request(Channel.SMS, datetime(2026, 11, 2, 23, 59, 59, 500000, timezone.utc))
    story.delivery(sms, "+15550000003", Status.SENT, 900)
    story.delivery(sms, "+15550000003", Status.DELIVERED, 2900)
    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=4))
    story.delivery(sms, "+15550000004", Status.FAILED, 400,
                   reason=Reason.PROVIDER_ERROR.value, provider_code="30003",
                   detail="Unreachable destination handset")
    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=5))
    story.delivery(sms, "+15550000005", Status.DUPLICATE, 3,
                   reason=Reason.DUPLICATE_NOTIFICATION.value)
    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=5, minutes=30))
    story.delivery(sms, "+15550000006", Status.SENT, 1100)
    story.delivery(sms, "+15550000006", Status.DELIVERED, 6100)
    sms = story.request(Channel.SMS, DAY_1 + timedelta(hours=5, minutes=45))
    story.delivery(sms, "+15550000007", Status.SENT, 1300)
    story.delivery(sms, "+15550000007", Status.PROVIDER_ACCEPTED, 1800)

    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=6))
    story.delivery(email, "a@example.com", Status.SENT, 2000)
    story.delivery(email, "a@example.com", Status.PROVIDER_ACCEPTED, 2500)
    story.delivery(email, "a@example.com", Status.DELIVERED, 5000)
    opened = story.delivery(email, "a@example.com", Status.OPENED, DAY_MS)
    story.delivery(email, "a@example.com", Status.CLICKED, DAY_MS + 30_000)
    story.delivery(email, "a@example.com", Status.OPTED_OUT, DAY_MS + 60_000,
                   reason="unsubscribe", user_id=email.request.user_id,
                   recipient_hash="hash-a@example.com")
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=7))
    story.delivery(email, "b@example.com", Status.SUPPRESSED, 4,
                   reason=Reason.CATEGORY_OPTED_OUT.value)
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=7, minutes=10))
    story.delivery(email, "c@example.com", Status.SENT, 1000)
    story.delivery(email, "c@example.com", Status.DELIVERED, 4000)
    story.delivery(email, "c@example.com", Status.BOUNCED, DAY_MS + 60_000, provider_code="5.1.1",
                   reason="Invalid Address", bounce_type="bounce",
                   detail="550 5.1.1 The email account does not exist.")
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=7, minutes=20))
    story.delivery(email, "d@example.com", Status.SENT, 3000)
    story.delivery(email, "d@example.com", Status.OPENED, 20_000, machine_open=True)
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=7, minutes=30))
    story.delivery(email, "e@example.com", Status.SENT, 1500)
    story.delivery(email, "e@example.com", Status.DROPPED, 1600, reason="Bounced Address",
                   provider_code="5.0.0")
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=8), sender="crm",
                          category="promotions")
    story.delivery(email, "f@example.com", Status.SENT, 2500)
    story.delivery(email, "f@example.com", Status.DEFERRED, 3000)
    story.delivery(email, "f@example.com", Status.DELIVERED, 8500)
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=8, minutes=10), sender="crm",
                          category="promotions")
    story.delivery(email, "g@example.com", Status.SENT, 500)
    story.delivery(email, "g@example.com", Status.DELIVERED, 1500)
    email = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=8, minutes=20), sender="crm",
                          category="promotions")
    story.delivery(email, "h@example.com", Status.SENT, 12_000)
    story.delivery(email, "h@example.com", Status.PROVIDER_ACCEPTED, 12_400)
    story.delivery(email, "h@example.com", Status.BOUNCED, 20_000, provider_code="4.0.0",
                   reason="Reputation", bounce_type="blocked")

    email = story.request(Channel.EMAIL, DAY_2)
    story.delivery(email, "none", Status.FAILED, 6, reason=Reason.UNKNOWN_USER.value)
    sms = story.request(Channel.SMS, DAY_2 + timedelta(hours=1))
    story.delivery(sms, "+15550000009", Status.SUPPRESSED, 2,
                   reason=Reason.PROVIDER_OPTED_OUT.value)
    stop = events.callback_event(
        span_id=None, status=Status.OPTED_OUT, occurred_at=iso(DAY_1 + timedelta(hours=10)),
        notification_id=None, provider="twilio", provider_message_id="SM-incoming-stop",
        callback_id="stop", reason="STOP", user_id=sms.request.user_id,
        recipient_hash="hash-+15550000009")

    dead_letter = events.dead_letter_event(b"{not json", Reason.INVALID_MESSAGE.value,
                                           "message is not JSON")
    dead_letter["event_ts"] = iso(DAY_1 + timedelta(hours=9))
    orphan = events.callback_event(
        span_id="span-herald-never-sent", status=Status.DELIVERED,
        occurred_at=iso(DAY_1 + timedelta(hours=9)), notification_id=None, provider="twilio",
        provider_message_id="SM-unknown", callback_id="orphan")
    spanless = events.callback_event(
        span_id=None, status=Status.DELIVERED, occurred_at=iso(DAY_1 + timedelta(hours=9)),
        notification_id=None, provider="sendgrid", provider_message_id="sg-no-custom-args",
        callback_id="spanless")
    first_push_sent = story.rows[1]
    assert first_push_sent["status"] == Status.SENT
    start = events.callback_event(
        span_id=None, status=Status.OPTED_IN, occurred_at=iso(DAY_2 + timedelta(hours=2)),
        notification_id=None, provider="twilio", provider_message_id="SM-incoming-start",
        callback_id="start", reason="START", user_id=sms.request.user_id,
        recipient_hash="hash-+15550000009")
    return [*story.rows, stop, start, dead_letter, orphan, spanless, dict(first_push_sent),
            dict(sms_accepted_twice), dict(undelivered), dict(opened), dict(repeated_receipt)], \
        story.fcm_rows


# --------------------------------------------------------------------------------------------
# The emulator, datasets on it, and dbt


@dataclass(frozen=True)
class DbtRun:
    """What a dbt invocation did: node name -> (status, failures, message, adapter code)."""

    success: bool
    nodes: dict[str, tuple[str, int | None, str | None, str | None]]

    def problems(self) -> dict[str, tuple]:
        """Nodes that did not succeed or pass (errors, failures, warnings, skips)."""
        return {name: node for name, node in self.nodes.items()
                if node[0] not in ("success", "pass")}


@dataclass(frozen=True)
class Warehouse:
    """The private emulator: datasets with an events table, dbt runs and queries on them."""

    endpoint: str
    work: Path

    def settings(self, dataset: str) -> Settings:
        """The dataset's settings; its FCM export table is in the dataset itself."""
        return Settings(project=PROJECT, dataset=dataset, bigquery_endpoint=self.endpoint,
                        fcm_export_dataset=dataset)

    def env(self, dataset: str) -> dict[str, str]:
        """What the dbt profile and herald.settings read, for this dataset."""
        return {"BIGQUERY_API_ENDPOINT": self.endpoint, "HERALD_PROJECT": PROJECT,
                "HERALD_DATASET": dataset, "HERALD_FCM_EXPORT_DATASET": dataset}

    def load(self, dataset: str, rows: list[dict[str, Any]],
             fcm_rows: list[dict[str, Any]] = ()) -> Settings:
        """Create the dataset's events and FCM export tables (as the local stack does) and insert
        event rows and export rows."""
        settings = self.settings(dataset)
        create_tables(settings)
        client = bigquery_client(settings)
        for table, inserted in ((settings.events_table, rows),
                                (settings.fcm_export_table_id, fcm_rows)):
            if inserted:
                assert client.insert_rows_json(table, list(inserted)) == []
        return settings

    def dbt(self, dataset: str, *args: str) -> DbtRun:
        """`dbt <args>` on the dataset, in this process: a dbt subprocess spends most of its time
        importing itself, and the tests run it several times. Target and logs go to a private
        directory per dataset (so repeated runs parse partially)."""
        from dbt.cli.main import dbtRunner

        work = self.work / dataset
        env = {**self.env(dataset), "DBT_USE_COLORS": "false",
               # Keep a developer's dbt/target and dbt/logs out of it.
               "DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs")}
        saved = dict(os.environ)
        os.environ.update(env)  # the profile and the sources read them with env_var()
        try:
            outcome = dbtRunner().invoke(
                [*args, "--project-dir", str(dbt_project.DBT_DIR), "--profiles-dir",
                 str(dbt_project.DBT_DIR), "--target", "local", "--quiet"])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if outcome.exception is not None:
            raise outcome.exception
        return DbtRun(outcome.success, {
            result.node.name: (str(result.status), result.failures, result.message,
                               (result.adapter_response or {}).get("code"))
            for result in outcome.result.results})

    def query(self, dataset: str, sql: str) -> list[dict[str, Any]]:
        client = bigquery_client(self.settings(dataset))
        return [dict(row) for row in client.query(sql).result()]


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """A private bqemulator on free ports, stopped (its whole process group) afterwards."""
    executable = Path(sys.executable).with_name("bqemulator")
    if not executable.exists():
        pytest.skip("bqemulator is not installed: pip install -e '.[local]'")
    subprocess.run([sys.executable, "-c", "from duckdb_extensions import import_extension;"
                    "import_extension('spatial')"], check=True, capture_output=True)
    rest, grpc = free_port(), free_port()
    url = f"http://127.0.0.1:{rest}"
    service = Service(
        "bigquery-emulator",
        [str(executable), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest),
         "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc), "--project", PROJECT,
         "--log-level", "warning"],
        http_ready(f"{url}/bigquery/v2/projects/{PROJECT}/datasets"))
    process = processes.start(service, tmp_path_factory.mktemp("bqemulator-logs"))
    try:
        yield Warehouse(url, tmp_path_factory.mktemp("dbt"))
    finally:
        processes.stop_group(process.pid)


@pytest.fixture(scope="session")
def story_build(warehouse: Warehouse) -> DbtRun:
    """The story inserted and `dbt build` run on it (models, unit tests and every data test)."""
    warehouse.load(STORY_DATASET, story_rows(), story_fcm_rows())
    return warehouse.dbt(STORY_DATASET, "build")


@pytest.fixture(scope="session")
def built(warehouse: Warehouse, story_build: DbtRun) -> Settings:
    """The story's dataset, once `dbt build` passed on it without a warning."""
    assert story_build.success and not story_build.problems(), story_build.problems()
    return warehouse.settings(STORY_DATASET)


@pytest.fixture
def new_story() -> Story:
    """An empty story to tell a test's own events with."""
    return Story()


@pytest.fixture
def fixed_story() -> list[dict[str, Any]]:
    """A fresh copy of the module docstring's rows."""
    return story_rows()


@pytest.fixture
def fixed_fcm_rows() -> list[dict[str, Any]]:
    """A fresh copy of the story's FCM export rows."""
    return story_fcm_rows()


@pytest.fixture(scope="session")
def built_env(warehouse: Warehouse, built: Settings) -> dict[str, str]:
    """The environment a notebook kernel or `herald report` reads the built story's marts with."""
    return warehouse.env(built.dataset)
