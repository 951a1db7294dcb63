"""The dbt models on a private BigQuery emulator, against answers worked out by hand.

A module fixture starts bqemulator on free ports, creates the events table exactly as the local
stack does, inserts a small fixed day of events built with herald.events (so the rows have the
pipeline's shape), runs `dbt build` (models and every dbt test) and then checks the marts
cell by cell. The fixture's story:

Day 1, 2026-11-02
  push   7 requests x 3 devices, all sent (21 latencies below); 1 request x 2 devices: one
         suppressed (device_disabled), one failed (no_address). One sent event inserted twice.
  sms    3 sent (700, 1500 ms, and 900 ms for a request accepted at 23:59:59.5 and sent after
         midnight: it counts on day 1), 1 failed (provider_error 30003), 1 duplicate.
         One accepted event inserted twice.
  email  1 sent (2000 ms), 1 suppressed (category_opted_out).
  a dead letter (no trace, no parent): not a delivery.
Day 2, 2026-11-03
  email  1 failed (unknown_user): eligible 1, rate 0.0.
  sms    1 suppressed (user_opted_out): eligible 0, rate NULL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from herald import dbt_project, events
from herald.clients import bigquery_client
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Envelope, NotificationRequest, Platform
from herald.events import Reason, Status
from herald.local import processes
from herald.local.processes import Service, free_port, http_ready
from herald.local.provision import create_events_table
from herald.settings import Settings

PROJECT = "herald-local"
DATASET = "herald_dbt_test"
DAY_1 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
DAY_2 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)

PUSH_LATENCIES_MS = [140, 60, 300, 90, 210, 180, 75, 260, 120, 95, 150,
                     230, 110, 85, 170, 290, 130, 100, 200, 160, 250]
"""21 sent push deliveries. Sorted: 60 75 85 90 95 100 110 120 130 140 [150] 160 170 180 200 210
230 250 260 [290] [300]."""

# What the marts must say, worked out by hand from the story above.
# delivery_rates_daily: (date, channel) -> deliveries, sent, failed, suppressed, duplicate,
# eligible (= deliveries - suppressed - duplicate), delivery_rate (= sent / eligible).
EXPECTED_RATES = {
    (date(2026, 11, 2), "push"): (23, 21, 1, 1, 0, 22, 21 / 22),
    (date(2026, 11, 2), "sms"): (5, 3, 1, 0, 1, 4, 0.75),
    (date(2026, 11, 2), "email"): (2, 1, 0, 1, 0, 1, 1.0),
    (date(2026, 11, 3), "email"): (1, 0, 1, 0, 0, 1, 0.0),
    (date(2026, 11, 3), "sms"): (1, 0, 0, 1, 0, 0, None),
}
# send_latency: channel -> sent, p50, p95, p99, max. APPROX_QUANTILES(x, 100)[OFFSET(n)] is a
# value that occurred: the k-th smallest with k = ceil(n/100 * count). The counts are chosen so
# that every usual discrete rule (nearest rank, BigQuery, DuckDB's quantile_disc) agrees.
#   push  count 21: p50 k=11 -> 150, p95 k=20 -> 290, p99 k=21 -> 300.
#   sms   count 3 (700, 900, 1500): p50 k=2 -> 900, p95 and p99 k=3 -> 1500.
#   email count 1: everything is 2000.
EXPECTED_LATENCY = {
    "push": (21, 150, 290, 300, 300),
    "sms": (3, 900, 1500, 1500, 1500),
    "email": (1, 2000, 2000, 2000, 2000),
}
RAW_ROWS = 52        # 17 accepted + 32 delivery events + 1 dead letter + 2 repeats
DISTINCT_EVENTS = 50
DELIVERIES = 32


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class Story:
    """Builds the fixture's rows with herald.events, the way the pipeline does."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._requests = 0

    def request(self, channel: Channel, accepted: datetime) -> Envelope:
        self._requests += 1
        n = self._requests
        envelope = Envelope(
            request=NotificationRequest(
                user_id=f"user-{n}", notification_id=f"notification-{n}", service_type="parcels",
                category_type="parcel_update", channel=channel, template_type="out_for_delivery",
                title="Your parcel", content="is on its way"),
            trace_id=f"trace-{n:02d}", sender_client="shop", accepted_at=_iso(accepted))
        self.rows.append(events.request_event(envelope, Status.ACCEPTED, event_ts=_iso(accepted)))
        return envelope

    def delivery(self, envelope: Envelope, address: str, status: Status, after_ms: int,
                 **extra: Any) -> dict[str, Any]:
        channel = envelope.request.channel
        accepted = datetime.fromisoformat(envelope.accepted_at.replace("Z", "+00:00"))
        span_id = events.span_for(envelope.trace_id, channel.value, address)
        if status is Status.SENT:
            extra.setdefault("provider_message_id", f"msg-{span_id}")
        row = events.delivery_event(
            envelope, span_id, status, event_ts=_iso(accepted + timedelta(milliseconds=after_ms)),
            provider=PROVIDER_BY_CHANNEL[channel], recipient_hash=f"hash-{address}", **extra)
        self.rows.append(row)
        return row


def story_rows() -> list[dict[str, Any]]:
    story = Story()
    platforms = [Platform.ANDROID, Platform.IOS, Platform.WEB]
    latencies = iter(PUSH_LATENCIES_MS)
    for r in range(7):
        envelope = story.request(Channel.PUSH, DAY_1 + timedelta(minutes=r))
        for d in range(3):
            story.delivery(envelope, f"device-{r}-{d}", Status.SENT, next(latencies),
                           device_id=f"device-{r}-{d}", platform=platforms[d].value)
    envelope = story.request(Channel.PUSH, DAY_1 + timedelta(hours=1))
    story.delivery(envelope, "device-off", Status.SUPPRESSED, 5, device_id="device-off",
                   platform=Platform.IOS.value, reason=Reason.DEVICE_DISABLED.value)
    story.delivery(envelope, "device-none", Status.FAILED, 5, device_id="device-none",
                   platform=Platform.ANDROID.value, reason=Reason.NO_ADDRESS.value)

    envelope = story.request(Channel.SMS, DAY_1 + timedelta(hours=2))
    sms_accepted_twice = story.rows[-1]
    story.delivery(envelope, "+15550000001", Status.SENT, 700)
    envelope = story.request(Channel.SMS, DAY_1 + timedelta(hours=3))
    story.delivery(envelope, "+15550000002", Status.SENT, 1500)
    envelope = story.request(Channel.SMS, datetime(2026, 11, 2, 23, 59, 59, 500000, timezone.utc))
    story.delivery(envelope, "+15550000003", Status.SENT, 900)
    envelope = story.request(Channel.SMS, DAY_1 + timedelta(hours=4))
    story.delivery(envelope, "+15550000004", Status.FAILED, 400,
                   reason=Reason.PROVIDER_ERROR.value, provider_code="30003",
                   detail="Unreachable destination handset")
    envelope = story.request(Channel.SMS, DAY_1 + timedelta(hours=5))
    story.delivery(envelope, "+15550000005", Status.DUPLICATE, 3,
                   reason=Reason.DUPLICATE_NOTIFICATION.value)

    envelope = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=6))
    story.delivery(envelope, "a@example.com", Status.SENT, 2000)
    envelope = story.request(Channel.EMAIL, DAY_1 + timedelta(hours=7))
    story.delivery(envelope, "b@example.com", Status.SUPPRESSED, 4,
                   reason=Reason.CATEGORY_OPTED_OUT.value)

    envelope = story.request(Channel.EMAIL, DAY_2)
    story.delivery(envelope, "none", Status.FAILED, 6, reason=Reason.UNKNOWN_USER.value)
    envelope = story.request(Channel.SMS, DAY_2 + timedelta(hours=1))
    story.delivery(envelope, "+15550000006", Status.SUPPRESSED, 2,
                   reason=Reason.USER_OPTED_OUT.value)

    dead_letter = events.dead_letter_event(b"{not json", Reason.INVALID_MESSAGE.value,
                                           "message is not JSON")
    dead_letter["event_ts"] = _iso(DAY_1 + timedelta(hours=8))
    first_push_sent = story.rows[1]
    assert first_push_sent["status"] == Status.SENT
    return [*story.rows, dead_letter, dict(first_push_sent), dict(sms_accepted_twice)]


# --------------------------------------------------------------------------------------------
# The emulator and the build


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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
        yield url
    finally:
        processes.stop_group(process.pid)


def _dbt_env(endpoint: str, dataset: str, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BIGQUERY_API_ENDPOINT": endpoint,
        "HERALD_PROJECT": PROJECT,
        "HERALD_DATASET": dataset,
        "HERALD_DBT_TARGET": "local",
        # Keep a developer's dbt/target and dbt/logs out of it.
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }


def _settings(endpoint: str, dataset: str) -> Settings:
    return Settings(project=PROJECT, dataset=dataset, bigquery_endpoint=endpoint)


def _insert(settings: Settings, rows: list[dict[str, Any]]) -> None:
    errors = bigquery_client(settings).insert_rows_json(settings.events_table, rows)
    assert errors == []


@pytest.fixture(scope="module")
def built(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The story inserted and `dbt build` passed (models and every dbt test)."""
    settings = _settings(endpoint, DATASET)
    create_events_table(settings)
    _insert(settings, story_rows())
    env = _dbt_env(endpoint, DATASET, tmp_path_factory.mktemp("dbt"))
    result = dbt_project.run_dbt(["build"], env)
    assert "ERROR=0" in result.stdout and "WARN=0" in result.stdout, result.stdout[-3000:]
    return settings


def _query(settings: Settings, sql: str) -> list[dict[str, Any]]:
    client = bigquery_client(settings)
    return [dict(row) for row in client.query(sql).result()]


# --------------------------------------------------------------------------------------------
# The marts


def test_staging_counts_a_redelivered_event_once(built: Settings) -> None:
    raw = _query(built, f"select count(*) as n from `{built.events_table}`")
    staged = _query(built, f"select count(*) as n, count(distinct event_id) as ids "
                           f"from `{PROJECT}.{DATASET}.stg_herald__events`")
    assert raw == [{"n": RAW_ROWS}]
    assert staged == [{"n": DISTINCT_EVENTS, "ids": DISTINCT_EVENTS}]


def test_int_deliveries_one_row_per_delivery(built: Settings) -> None:
    rows = _query(built, f"select final_status, count(*) as n, "
                         f"countif(sent_at is not null) as with_sent_at, "
                         f"countif(accept_to_sent_ms is not null) as with_latency "
                         f"from `{PROJECT}.{DATASET}.int_deliveries` group by final_status")
    by_status = {row["final_status"]: (row["n"], row["with_sent_at"], row["with_latency"])
                 for row in rows}
    assert by_status == {"sent": (25, 25, 25), "failed": (3, 0, 0), "suppressed": (3, 0, 0),
                         "duplicate": (1, 0, 0)}
    assert sum(n for n, _, _ in by_status.values()) == DELIVERIES
    failed = _query(built, f"select reason, provider_code from `{PROJECT}.{DATASET}.int_deliveries`"
                           f" where final_status = 'failed' order by reason")
    assert failed == [{"reason": "no_address", "provider_code": None},
                      {"reason": "provider_error", "provider_code": "30003"},
                      {"reason": "unknown_user", "provider_code": None}]


def test_delivery_rates_daily(built: Settings) -> None:
    rows = _query(built, f"select * from `{PROJECT}.{DATASET}.delivery_rates_daily`")
    actual = {}
    for row in rows:
        values = tuple(row[c] for c in ("deliveries", "sent", "failed", "suppressed", "duplicate",
                                         "eligible"))
        actual[(row["accepted_date"], row["channel"])] = (*values, row["delivery_rate"])
    assert set(actual) == set(EXPECTED_RATES)
    for key, expected in EXPECTED_RATES.items():
        assert actual[key][:-1] == expected[:-1], key
        if expected[-1] is None:
            assert actual[key][-1] is None, key
        else:
            assert actual[key][-1] == pytest.approx(expected[-1]), key


def test_send_latency(built: Settings) -> None:
    rows = _query(built, f"select * from `{PROJECT}.{DATASET}.send_latency`")
    actual = {row["channel"]: (row["sent"], row["p50_accept_to_sent_ms"],
                               row["p95_accept_to_sent_ms"], row["p99_accept_to_sent_ms"],
                               row["max_accept_to_sent_ms"]) for row in rows}
    assert actual == EXPECTED_LATENCY


def test_mart_column_types(built: Settings) -> None:
    """Counts are INT64 and the rate FLOAT64, as on BigQuery (notebooks read them as numbers)."""
    client = bigquery_client(built)
    rates = {f.name: f.field_type for f in
             client.get_table(f"{PROJECT}.{DATASET}.delivery_rates_daily").schema}
    latency = {f.name: f.field_type for f in
               client.get_table(f"{PROJECT}.{DATASET}.send_latency").schema}
    assert rates == {"accepted_date": "DATE", "channel": "STRING", "deliveries": "INTEGER",
                     "sent": "INTEGER", "failed": "INTEGER", "suppressed": "INTEGER",
                     "duplicate": "INTEGER", "eligible": "INTEGER", "delivery_rate": "FLOAT"}
    assert latency == {"channel": "STRING", "sent": "INTEGER", "p50_accept_to_sent_ms": "INTEGER",
                       "p95_accept_to_sent_ms": "INTEGER", "p99_accept_to_sent_ms": "INTEGER",
                       "max_accept_to_sent_ms": "INTEGER"}


def test_a_delivery_that_ends_twice_fails_the_build(
        endpoint: str, built: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The singular test catches a delivery with two terminal events (sent, then failed)."""
    dataset = "herald_dbt_conflict"
    settings = _settings(endpoint, dataset)
    create_events_table(settings)
    story = Story()
    envelope = story.request(Channel.SMS, DAY_1)
    story.delivery(envelope, "+15550000009", Status.SENT, 100)
    story.delivery(envelope, "+15550000009", Status.FAILED, 200,
                   reason=Reason.PROVIDER_ERROR.value, provider_code="30005")
    _insert(settings, story.rows)
    env = _dbt_env(endpoint, dataset, tmp_path_factory.mktemp("dbt-conflict"))
    with pytest.raises(dbt_project.DbtError) as error:
        dbt_project.run_dbt(["build", "--select", "stg_herald__events", "int_deliveries",
                             "assert_one_terminal_event_per_delivery"], env)
    message = str(error.value)
    assert re.search(r"FAIL 1 assert_one_terminal_event_per_delivery", message), message


# --------------------------------------------------------------------------------------------
# Schema drift


def test_sources_yaml_is_generated_from_the_event_schema() -> None:
    committed = dbt_project.SOURCES_PATH.read_text()
    assert committed == dbt_project.render_sources_yaml(), (
        "dbt/models/staging/__sources.yml differs from herald.events: run "
        "python -c 'from herald.dbt_project import write_sources_yaml; write_sources_yaml()'")


def test_sources_yaml_covers_every_field() -> None:
    document = yaml.safe_load(dbt_project.render_sources_yaml())
    (table,) = document["sources"][0]["tables"]
    assert table["name"] == events.EVENTS_TABLE
    assert [c["name"] for c in table["columns"]] == [f.name for f in events.EVENT_FIELDS]
    not_null = {c["name"] for c in table["columns"] if "not_null" in c.get("data_tests", [])}
    assert not_null == {f.name for f in events.EVENT_FIELDS if f.mode == "REQUIRED"}
    status = next(c for c in table["columns"] if c["name"] == "status")
    values = status["data_tests"][-1]["accepted_values"]["arguments"]["values"]
    assert values == [s.value for s in Status]


def _model_accepted_values(model_yaml: str, column: str) -> list[str]:
    document = yaml.safe_load((dbt_project.DBT_DIR / "models" / model_yaml).read_text())
    (model,) = document["models"]
    (spec,) = [c for c in model["columns"] if c["name"] == column]
    (test,) = [t for t in spec["data_tests"] if isinstance(t, dict) and "accepted_values" in t]
    return test["accepted_values"]["arguments"]["values"]


def test_hand_written_value_lists_match_the_contracts() -> None:
    """The few lists the models spell out (in SQL or in a model's YAML) follow herald.events."""
    delivery_terminal = {s.value for s in events.TERMINAL - {Status.DEAD_LETTER}}
    assert set(_model_accepted_values("intermediate/int_deliveries.yml", "final_status")) == \
        delivery_terminal
    for model_yaml in ("marts/delivery_rates_daily.yml", "marts/send_latency.yml"):
        assert _model_accepted_values(model_yaml, "channel") == [c.value for c in Channel]
    for sql in (dbt_project.DBT_DIR / "models/intermediate/int_deliveries.sql",
                dbt_project.DBT_DIR / "tests/assert_one_terminal_event_per_delivery.sql"):
        (listed,) = re.findall(r"status in \(([^)]*)\)", sql.read_text())
        assert {v.strip().strip("'") for v in listed.split(",")} == delivery_terminal, sql
