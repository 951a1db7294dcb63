"""The dbt models on a private BigQuery emulator, against answers worked out by hand.

tests/conftest.py starts the emulator, inserts a small fixed story of events (told in its module
docstring: sends, provider callbacks in and out of order, repeats, failures, opt-outs) and runs
`dbt build` (models, dbt unit tests and every data test) once. These tests check the marts cell
by cell, build the same story incrementally in two batches and with --full-refresh and compare,
and keep the hand-written lists in the project equal to herald.events.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from herald import dbt_project, events
from herald.clients import bigquery_client
from herald.contracts import PROVIDER_BY_CHANNEL, Channel
from herald.events import Reason, Status
from herald.providers.fcm import export
from herald.settings import Settings

if TYPE_CHECKING:  # the fixtures' types; conftest.py is not imported by tests
    from conftest import DbtRun, Story, Warehouse

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)
RAW_ROWS = 101       # 25 accepted + 40 terminal + 30 callbacks (5 app receipts) + 1 dead
DISTINCT_EVENTS = 96  # letter, 5 repeats
DELIVERIES = 40      # the two orphan callbacks and the dead letter are not deliveries

# int_deliveries: (terminal_status, final_status) -> deliveries. A callback refines sent only.
EXPECTED_STATUSES = {
    ("sent", "sent"): 13 + 1,                 # push no source confirmed; sms7
    ("sent", "delivered"): 8 + 3 + 4,         # push (FCM export 5, receipts 3); sms1, sms3,
                                              # sms6; email1, email4, email6, email7
    ("sent", "undelivered"): 1,               # sms2
    ("sent", "bounced"): 2,                   # email3, after a delivered report; email8 blocked
    ("sent", "dropped"): 1,                   # email5
    ("failed", "failed"): 3,
    ("suppressed", "suppressed"): 3,
    ("duplicate", "duplicate"): 1,
}

# delivery_rates_daily: (date, channel) -> deliveries, sent, failed, suppressed, duplicate,
# eligible, delivery_rate (sent / eligible), delivered, undelivered, bounced (hard_bounced,
# blocked), dropped, opened (by a person), machine_opened (by a privacy proxy only), clicked,
# opted_out, confirmable, confirmed_delivery_rate (delivered / confirmable: for push, the Android
# pushes FCM's export reports on and the 3 iOS and web devices whose apps sent receipts).
RATE_COLUMNS = ("deliveries", "sent", "failed", "suppressed", "duplicate", "eligible",
                "delivery_rate", "delivered", "undelivered", "bounced", "hard_bounced", "blocked",
                "dropped", "opened", "machine_opened", "clicked", "opted_out", "confirmable",
                "confirmed_delivery_rate")
EXPECTED_RATES = {
    (D1, "push"): (23, 21, 1, 1, 0, 22, 21 / 22, 8, 0, 0, 0, 0, 0, 2, 0, 0, 0, 10, 8 / 10),
    (D1, "sms"): (7, 5, 1, 0, 1, 6, 5 / 6, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 3 / 5),
    # bounced: email3 (hard) and email8 (blocked); opened: email1 (opened, clicked, then
    # unsubscribed); machine_opened: email4 (a proxy's open, no delivered report)
    (D1, "email"): (8, 7, 0, 1, 0, 7, 1.0, 4, 0, 2, 1, 1, 1, 1, 1, 1, 1, 7, 4 / 7),
    (D2, "email"): (1, 0, 1, 0, 0, 1, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None),
    (D2, "sms"): (1, 0, 0, 1, 0, 0, None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None),
}

# delivery_funnel_daily: requested, eligible, sent, delivered, opened, clicked, machine_opened,
# delivery_unknown (sent that no source could have confirmed: 11 iOS and web pushes).
EXPECTED_FUNNEL = {
    (D1, "push"): (23, 22, 21, 8, 2, 0, 0, 11),
    (D1, "sms"): (7, 6, 5, 3, 0, 0, 0, 0),
    (D1, "email"): (8, 7, 7, 4, 1, 1, 1, 0),
    (D2, "email"): (1, 1, 0, 0, 0, 0, 0, 0),
    (D2, "sms"): (1, 0, 0, 0, 0, 0, 0, 0),
}

# push_delivery_daily: (date, platform) -> sent, confirmable, delivery_unknown, delivered,
# delivered_fcm_export, rejected_fcm_export, delivered_app_receipt, opened,
# confirmed_delivery_rate, fcm_export_delivered_rate, app_receipt_delivered_rate, opened_rate.
# (The story has no rejection; int_deliveries' unit test has one.)
PUSH_COLUMNS = ("sent", "confirmable", "delivery_unknown", "delivered", "delivered_fcm_export",
                "rejected_fcm_export", "delivered_app_receipt", "opened",
                "confirmed_delivery_rate", "fcm_export_delivered_rate",
                "app_receipt_delivered_rate", "opened_rate")
EXPECTED_PUSH = {
    # FCM's export: requests 1-5 delivered; request 4's app sent a receipt too
    (D1, "android"): (7, 7, 0, 5, 5, 0, 1, 0, 5 / 7, 5 / 7, 1 / 7, 0.0),
    # receipts: request 1 received and opened, request 2 received; 5 iOS pushes unknown
    (D1, "ios"): (7, 2, 5, 2, 0, 0, 2, 1, 1.0, None, 2 / 7, 1 / 2),
    # request 3's app reported the open only: it proves delivery
    (D1, "web"): (7, 1, 6, 1, 0, 0, 1, 1, 1.0, None, 1 / 7, 1.0),
}

# send_slo_daily: slo_ms, sent, sent_within_slo, slo_share. email8 took 12 s.
EXPECTED_SLO = {
    (D1, "push"): (10_000, 21, 21, 1.0),
    (D1, "sms"): (10_000, 5, 5, 1.0),
    (D1, "email"): (10_000, 7, 6, 6 / 7),
    (D2, "email"): (10_000, 0, 0, None),
    (D2, "sms"): (10_000, 0, 0, None),
}

# Percentiles: APPROX_QUANTILES(x, 100)[OFFSET(n)] is a value that occurred, the k-th smallest with
# k = ceil(n/100 * count). Every count here (1, 3, 5, 7, 21) is one where the usual discrete
# rules (nearest rank, BigQuery, DuckDB's quantile_disc) agree.
#   push  accept->sent, 21 values (conftest.PUSH_LATENCIES_MS): p50 k=11 -> 150, p95 k=20 -> 290,
#         p99 k=21 -> 300. delivered_at on 7 (the web push was only opened): Android requests
#         1-5 by FCM (request 4's receipt at 4.5 s is later than FCM's 4 s), iOS requests 1-2
#         by receipt: sent->delivered 1000 2000 3000 4000 5000 600 800 -> p50 k=4 2000, p95 and
#         p99 k=7 5000; accept->delivered (send latencies 140 90 75 95 110 60 210) 1140 2090
#         3075 4095 5110 660 1010 -> p50 2090, p95 and p99 5110.
#   sms   accept->sent 700 900 1100 1300 1500: p50 k=3 -> 1100, p95 and p99 k=5 -> 1500.
#         delivered sms1, sms3, sms6: sent->delivered 3000 2000 5000 -> 2000 [3000] [5000];
#         accept->delivered 3700 2900 6100 -> 2900 [3700] [6100].
#   email accept->sent 500 1000 1500 2000 2500 3000 12000: p50 k=4 -> 2000, p95, p99 k=7 -> 12000.
#         delivered with a report email1, email6, email7 (email4 has an open only, email3
#         bounced): sent->delivered 3000 6000 1000 -> 1000 [3000] [6000];
#         accept->delivered 5000 8500 1500 -> 1500 [5000] [8500].
# delivery_latency_daily (all on day 1): sent, p50/p95/p99 accept->sent, delivered,
# p50/p95/p99 sent->delivered, p50/p95/p99 accept->delivered.
EXPECTED_DAILY_LATENCY = {
    (D1, "push"): (21, 150, 290, 300, 7, 2000, 5000, 5000, 2090, 5110, 5110),
    (D1, "sms"): (5, 1100, 1500, 1500, 3, 3000, 5000, 5000, 3700, 6100, 6100),
    (D1, "email"): (7, 2000, 12000, 12000, 3, 3000, 6000, 6000, 5000, 8500, 8500),
}
# send_latency (all time): sent, p50, p95, p99, max accept->sent.
EXPECTED_LATENCY = {
    "push": (21, 150, 290, 300, 300),
    "sms": (5, 1100, 1500, 1500, 1500),
    "email": (7, 2000, 12000, 12000, 12000),
}

# delivery_failures_daily: (date, channel, provider, failure, bounce_type, reason, provider_code)
# -> deliveries. A dropped event's reason is its reason, its status ("5.0.0") the SMTP code.
EXPECTED_FAILURES = {
    (D1, "push", "fcm", "failed", None, "no_address", None): 1,
    (D1, "sms", "twilio", "failed", None, "provider_error", "30003"): 1,
    (D1, "sms", "twilio", "undelivered", None, "unreachable", "30005"): 1,
    (D1, "email", "sendgrid", "bounced", "bounce", "Invalid Address", "5.1.1"): 1,
    (D1, "email", "sendgrid", "bounced", "blocked", "Reputation", "4.0.0"): 1,
    (D1, "email", "sendgrid", "dropped", None, "Bounced Address", "5.0.0"): 1,
    (D2, "email", "sendgrid", "failed", None, "unknown_user", None): 1,
}
# opt_out_suppressions_daily: (date, channel, category, reason) -> suppressed.
EXPECTED_SUPPRESSIONS = {
    (D1, "push", "parcel_update", "device_disabled"): 1,
    (D1, "email", "parcel_update", "category_opted_out"): 1,
    (D2, "sms", "parcel_update", "provider_opted_out"): 1,
}
# provider_opt_outs_daily: (event date, channel, provider, reason) -> opt_outs, opt_ins, users.
EXPECTED_PROVIDER_OPT_OUTS = {
    (D1, "sms", "twilio", "STOP"): (1, 0, 1),               # texted, about no delivery
    (D2, "sms", "twilio", "START"): (0, 1, 1),              # the same user, back in
    (D2, "email", "sendgrid", "unsubscribe"): (1, 0, 1),    # email1's recipient, the next day
}
# delivery_outcomes_daily, day 1 email by sender and category: deliveries, sent, sent_within_slo,
# delivered, bounced, hard_bounced, blocked, dropped, opened, machine_opened, clicked, opted_out,
# confirmed_delivery_rate.
EXPECTED_EMAIL_OUTCOMES = {
    ("shop", "parcel_update"): (5, 4, 4, 2, 1, 1, 0, 1, 1, 1, 1, 1, 2 / 4),  # email1-5
    ("crm", "promotions"): (3, 3, 2, 2, 1, 0, 1, 0, 0, 0, 0, 0, 2 / 3),      # email6-8
}

MODELS = ("stg_herald__events", "stg_fcm__message_events", "int_deliveries",
          "int_receipt_devices", "push_delivery_daily", "delivery_outcomes_daily",
          "delivery_rates_daily", "delivery_funnel_daily", "send_slo_daily",
          "delivery_latency_daily", "send_latency", "delivery_failures_daily",
          "opt_out_suppressions_daily", "provider_opt_outs_daily")


def _rows(warehouse: Warehouse, dataset: str, model: str) -> list[dict[str, Any]]:
    return warehouse.query(dataset, f"select * from `{dataset}.{model}`")


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...],
           values: tuple[str, ...]) -> dict[tuple, tuple]:
    table = {tuple(row[k] for k in keys): tuple(row[v] for v in values) for row in rows}
    assert len(table) == len(rows), "duplicate keys"
    return table


def _assert_table(actual: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    """Counts exactly, ratios to float precision, NULL as NULL."""
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        for column, (g, w) in enumerate(zip(got, want, strict=True)):
            if isinstance(w, float):
                assert g == pytest.approx(w), (key, column)
            else:
                assert g == w and type(g) is type(w), (key, column, g, w)


# --------------------------------------------------------------------------------------------
# The build


def test_build_ran_the_unit_tests_and_every_data_test(story_build: DbtRun) -> None:
    assert story_build.success, story_build.problems()
    assert story_build.problems() == {}
    unit_tests = {name for name in story_build.nodes if name.startswith("int_deliveries_")}
    assert unit_tests == {"int_deliveries_final_status_precedence",
                          "int_deliveries_incremental_folds_new_events_into_stored_rows"}
    assert story_build.nodes["assert_one_terminal_event_per_delivery"][0] == "pass"
    for model in MODELS:
        assert story_build.nodes[model][0] == "success", model


def test_staging_counts_a_repeated_event_once(warehouse: Warehouse, built: Settings) -> None:
    raw = warehouse.query(built.dataset, f"select count(*) as n from `{built.events_table}`")
    staged = warehouse.query(built.dataset, "select count(*) as n, count(distinct event_id) as ids "
                                            f"from `{built.dataset}.stg_herald__events`")
    assert raw == [{"n": RAW_ROWS}]
    assert staged == [{"n": DISTINCT_EVENTS, "ids": DISTINCT_EVENTS}]


# --------------------------------------------------------------------------------------------
# int_deliveries


def test_int_deliveries_one_row_per_delivery(warehouse: Warehouse, built: Settings) -> None:
    rows = warehouse.query(built.dataset, f"""
        select terminal_status, final_status, count(*) as n,
            countif(sent_at is not null) as with_sent_at,
            countif(accept_to_sent_ms is not null) as with_latency
        from `{built.dataset}.int_deliveries` group by 1, 2""")
    by_status = {(r["terminal_status"], r["final_status"]): r["n"] for r in rows}
    assert by_status == EXPECTED_STATUSES
    assert sum(by_status.values()) == DELIVERIES
    for row in rows:
        sent = row["terminal_status"] == "sent"
        assert row["with_sent_at"] == row["with_latency"] == (row["n"] if sent else 0), row


def test_int_deliveries_callbacks_in_any_order(warehouse: Warehouse, built: Settings) -> None:
    """Each stage keeps its first report; final_status follows the precedence, not arrival."""
    rows = warehouse.query(built.dataset, f"""
        select user_id, final_status, reason, provider_code, bounce_type,
            timestamp_diff(provider_accepted_at, accepted_at, millisecond) as to_provider_accepted,
            timestamp_diff(delivered_at, accepted_at, millisecond) as to_delivered,
            timestamp_diff(opened_at, accepted_at, millisecond) as to_opened,
            timestamp_diff(machine_opened_at, accepted_at, millisecond) as to_machine_opened,
            timestamp_diff(clicked_at, accepted_at, millisecond) as to_clicked,
            timestamp_diff(opted_out_at, accepted_at, millisecond) as to_opted_out,
            timestamp_diff(final_at, accepted_at, millisecond) as to_final,
            accept_to_sent_ms, sent_to_delivered_ms, accept_to_delivered_ms, sent_within_slo
        from `{built.dataset}.int_deliveries`
        where channel != 'push' and terminal_status = 'sent'""")
    actual = {row.pop("user_id"): row for row in rows}
    day = 24 * 3600 * 1000

    def delivery(final, code=None, pa=None, dl=None, op=None, cl=None, fin=None, a2s=None,
                 s2d=None, a2d=None, slo=True, reason=None, mop=None, out=None, bounce=None):
        return {"final_status": final, "reason": reason, "provider_code": code,
                "to_provider_accepted": pa, "to_delivered": dl, "to_opened": op,
                "to_machine_opened": mop, "to_clicked": cl, "to_opted_out": out,
                "to_final": fin, "accept_to_sent_ms": a2s, "sent_to_delivered_ms": s2d,
                "accept_to_delivered_ms": a2d, "sent_within_slo": slo, "bounce_type": bounce}

    # Users are numbered by request: 1-8 push, 9-15 sms, 16-23 email.
    assert actual == {
        # delivered reported before provider_accepted
        "user-9": delivery("delivered", pa=5000, dl=3700, fin=3700, a2s=700, s2d=3000, a2d=3700),
        # undelivered posted twice
        "user-10": delivery("undelivered", "30005", pa=2000, fin=6500, a2s=1500,
                            reason="unreachable"),
        "user-11": delivery("delivered", dl=2900, fin=2900, a2s=900, s2d=2000, a2d=2900),
        "user-14": delivery("delivered", dl=6100, fin=6100, a2s=1100, s2d=5000, a2d=6100),
        "user-15": delivery("sent", pa=1800, fin=1300, a2s=1300),
        # opened (posted twice) and clicked the next day: the open decides; the unsubscribe
        # after them decides nothing
        "user-16": delivery("delivered", pa=2500, dl=5000, op=day, cl=day + 30_000, fin=day,
                            a2s=2000, s2d=3000, a2d=5000, out=day + 60_000),
        # a bounce after a delivered report wins over it; delivered_at stays
        "user-18": delivery("bounced", "5.1.1", dl=4000, fin=day + 60_000, a2s=1000, s2d=3000,
                            a2d=4000, reason="Invalid Address", bounce="bounce"),
        # a privacy proxy's open without a delivered report proves delivery, not a reader
        "user-19": delivery("delivered", mop=20_000, fin=20_000, a2s=3000),
        "user-20": delivery("dropped", "5.0.0", fin=1600, a2s=1500, reason="Bounced Address"),
        # deferred changes nothing
        "user-21": delivery("delivered", dl=8500, fin=8500, a2s=2500, s2d=6000, a2d=8500),
        "user-22": delivery("delivered", dl=1500, fin=1500, a2s=500, s2d=1000, a2d=1500),
        "user-23": delivery("bounced", "4.0.0", pa=12_400, fin=20_000, a2s=12_000, slo=False,
                            reason="Reputation", bounce="blocked"),
    }


def test_int_deliveries_failures_keep_reason_and_code(warehouse: Warehouse,
                                                      built: Settings) -> None:
    failed = warehouse.query(built.dataset, f"""
        select reason, provider_code from `{built.dataset}.int_deliveries`
        where final_status = 'failed' order by reason""")
    assert failed == [{"reason": "no_address", "provider_code": None},
                      {"reason": "provider_error", "provider_code": "30003"},
                      {"reason": "unknown_user", "provider_code": None}]


# --------------------------------------------------------------------------------------------
# The marts


def test_delivery_rates_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "delivery_rates_daily")
    _assert_table(_table(rows, ("accepted_date", "channel"), RATE_COLUMNS), EXPECTED_RATES)


def test_delivery_funnel_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "delivery_funnel_daily")
    _assert_table(_table(rows, ("accepted_date", "channel"),
                         ("requested", "eligible", "sent", "delivered", "opened", "clicked",
                          "machine_opened", "delivery_unknown")), EXPECTED_FUNNEL)


def test_push_delivery_daily(warehouse: Warehouse, built: Settings) -> None:
    """Push by platform and by the source that confirmed it, as the story tells it (conftest:
    FCM_DELIVERED_MS, RECEIPTS): the marts equal what FCM's export and the apps reported."""
    rows = _rows(warehouse, built.dataset, "push_delivery_daily")
    _assert_table(_table(rows, ("accepted_date", "platform"), PUSH_COLUMNS), EXPECTED_PUSH)


def test_push_deliveries_take_each_sources_first_report(warehouse: Warehouse,
                                                        built: Settings) -> None:
    rows = warehouse.query(built.dataset, f"""
        select device_id, final_status,
            timestamp_diff(delivered_at, sent_at, millisecond) as to_delivered,
            timestamp_diff(fcm_delivered_at, sent_at, millisecond) as to_fcm,
            timestamp_diff(receipt_delivered_at, sent_at, millisecond) as to_receipt,
            timestamp_diff(opened_at, sent_at, millisecond) as to_opened
        from `{built.dataset}.int_deliveries`
        where channel = 'push' and final_status = 'delivered'""")
    actual = {row.pop("device_id"): tuple(row.values()) for row in rows}
    assert actual == {
        "device-0-0": ("delivered", 1000, 1000, None, None),
        "device-1-0": ("delivered", 2000, 2000, None, None),
        "device-2-0": ("delivered", 3000, 3000, None, None),
        "device-3-0": ("delivered", 4000, 4000, 4500, None),   # FCM's record came first
        "device-4-0": ("delivered", 5000, 5000, None, None),
        "device-0-1": ("delivered", 600, None, 600, 60_000),   # its receipt posted twice
        "device-1-1": ("delivered", 800, None, 800, None),
        "device-2-2": ("delivered", None, None, 90_000, 90_000),  # an open alone proves it
    }


def test_send_slo_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "send_slo_daily")
    _assert_table(_table(rows, ("accepted_date", "channel"),
                         ("slo_ms", "sent", "sent_within_slo", "slo_share")), EXPECTED_SLO)


def test_delivery_latency_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "delivery_latency_daily")
    columns = ("sent", "p50_due_to_sent_ms", "p95_due_to_sent_ms", "p99_due_to_sent_ms",
               "delivered", "p50_sent_to_delivered_ms", "p95_sent_to_delivered_ms",
               "p99_sent_to_delivered_ms", "p50_due_to_delivered_ms",
               "p95_due_to_delivered_ms", "p99_due_to_delivered_ms")
    _assert_table(_table(rows, ("accepted_date", "channel"), columns), EXPECTED_DAILY_LATENCY)


def test_send_latency(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "send_latency")
    _assert_table(_table(rows, ("channel",), (
        "sent", "p50_due_to_sent_ms", "p95_due_to_sent_ms", "p99_due_to_sent_ms",
        "max_due_to_sent_ms")), {(k,): v for k, v in EXPECTED_LATENCY.items()})


def test_delivery_failures_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "delivery_failures_daily")
    actual = _table(rows, ("accepted_date", "channel", "provider", "failure", "bounce_type",
                           "reason", "provider_code"), ("deliveries",))
    assert actual == {key: (n,) for key, n in EXPECTED_FAILURES.items()}


def test_opt_out_suppressions_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "opt_out_suppressions_daily")
    actual = _table(rows, ("accepted_date", "channel", "category_type", "reason"), ("suppressed",))
    assert actual == {key: (n,) for key, n in EXPECTED_SUPPRESSIONS.items()}


def test_provider_opt_outs_daily(warehouse: Warehouse, built: Settings) -> None:
    rows = _rows(warehouse, built.dataset, "provider_opt_outs_daily")
    _assert_table(_table(rows, ("event_date", "channel", "provider", "reason"),
                         ("opt_outs", "opt_ins", "users")), EXPECTED_PROVIDER_OPT_OUTS)


def test_delivery_outcomes_daily(warehouse: Warehouse, built: Settings) -> None:
    """The fact the daily marts roll up: split by provider, category and sender."""
    rows = _rows(warehouse, built.dataset, "delivery_outcomes_daily")
    assert {(r["channel"], r["provider"]) for r in rows} == {
        (channel.value, provider) for channel, provider in PROVIDER_BY_CHANNEL.items()}
    email = [r for r in rows if r["accepted_date"] == D1 and r["channel"] == "email"]
    _assert_table(_table(email, ("sender_client", "category_type"), (
        "deliveries", "sent", "sent_within_slo", "delivered", "bounced", "hard_bounced",
        "blocked", "dropped", "opened", "machine_opened", "clicked", "opted_out",
        "confirmed_delivery_rate")), EXPECTED_EMAIL_OUTCOMES)
    by_day_channel: dict[tuple, list[int]] = {}
    for row in rows:
        sums = by_day_channel.setdefault((row["accepted_date"], row["channel"]), [0, 0])
        sums[0] += row["deliveries"]
        sums[1] += row["sent"]
    assert by_day_channel == {key: [v[0], v[1]] for key, v in EXPECTED_RATES.items()}


def test_mart_column_types(built: Settings) -> None:
    """Counts are INT64 and rates FLOAT64, as on BigQuery (notebooks read them as numbers)."""
    client = bigquery_client(built)

    def schema(model: str) -> dict[str, str]:
        return {f.name: f.field_type for f in client.get_table(
            f"{built.project}.{built.dataset}.{model}").schema}

    counts = ("deliveries", "sent", "failed", "suppressed", "duplicate", "eligible", "delivered",
              "undelivered", "bounced", "hard_bounced", "blocked", "dropped", "opened",
              "machine_opened", "clicked", "opted_out", "confirmable")
    assert schema("delivery_rates_daily") == {
        "accepted_date": "DATE", "channel": "STRING", **{c: "INTEGER" for c in counts},
        "delivery_rate": "FLOAT", "confirmed_delivery_rate": "FLOAT"}
    assert schema("send_latency") == {
        "channel": "STRING", "sent": "INTEGER", "p50_due_to_sent_ms": "INTEGER",
        "p95_due_to_sent_ms": "INTEGER", "p99_due_to_sent_ms": "INTEGER",
        "max_due_to_sent_ms": "INTEGER"}
    assert schema("delivery_funnel_daily") == {
        "accepted_date": "DATE", "channel": "STRING", **{c: "INTEGER" for c in (
            "requested", "eligible", "sent", "delivered", "opened", "clicked",
            "machine_opened", "delivery_unknown")}}
    assert schema("push_delivery_daily") == {
        "accepted_date": "DATE", "platform": "STRING",
        **{c: "INTEGER" if "rate" not in c else "FLOAT" for c in PUSH_COLUMNS}}
    assert schema("send_slo_daily") == {
        "accepted_date": "DATE", "channel": "STRING", "slo_ms": "INTEGER", "sent": "INTEGER",
        "sent_within_slo": "INTEGER", "slo_share": "FLOAT"}
    latency = schema("delivery_latency_daily")
    assert {name: kind for name, kind in latency.items() if kind != "INTEGER"} == {
        "accepted_date": "DATE", "channel": "STRING"}
    deliveries = schema("int_deliveries")
    assert (deliveries["sent_within_slo"], deliveries["due_at"], deliveries["due_to_sent_ms"]) == (
        "BOOLEAN", "TIMESTAMP", "INTEGER")
    outcomes = schema("delivery_outcomes_daily")
    assert (outcomes["frequency_capped"], outcomes["held"]) == ("INTEGER", "INTEGER")


def test_the_story_has_no_holds_so_due_is_acceptance(warehouse: Warehouse, built: Settings) -> None:
    """Issue 12: without a scheduled or deferred event, a delivery is due when accepted and the
    SLO's latency is accept_to_sent (the int_deliveries unit test covers held deliveries)."""
    rows = _rows(warehouse, built.dataset, "int_deliveries")
    assert rows and all(row["due_at"] == row["accepted_at"] for row in rows)
    assert all(row["due_to_sent_ms"] == row["accept_to_sent_ms"] for row in rows)


# --------------------------------------------------------------------------------------------
# Incremental


def test_incremental_runs_equal_a_full_build(warehouse: Warehouse, built: Settings,
                                             fixed_story: list[dict[str, Any]],
                                             fixed_fcm_rows: list[dict[str, Any]]) -> None:
    """The story in two batches, merged incrementally, gives the full build's tables; so does
    --full-refresh afterwards.

    Batch 1 ends at 2026-11-03 06:00, so the second run's watermark is 2026-11-03: it re-reads
    that day's events only (event_lookback_days 0) and must fold email1's open and click and
    email3's bounce into the rows the first run stored."""
    dataset = "herald_dbt_incremental"
    rows = fixed_story
    first = [row for row in rows if row["event_ts"] < "2026-11-03T06:00"]
    warehouse.load(dataset, first, fixed_fcm_rows)
    # The story is dated 2026-11: widen the late-callback window so it covers it whatever today is.
    run_vars = ["--vars", "{late_callback_days: 36500, event_lookback_days: 0}"]
    created = warehouse.dbt(dataset, "run", *run_vars)
    assert created.success and not created.problems(), created.problems()
    assert created.nodes["int_deliveries"][3] == "CREATE TABLE"

    client = bigquery_client(warehouse.settings(dataset))
    errors = client.insert_rows_json(warehouse.settings(dataset).events_table,
                                     [row for row in rows if row not in first])
    assert errors == []
    merged = warehouse.dbt(dataset, "run", *run_vars)
    assert merged.success and not merged.problems(), merged.problems()
    for model in ("int_deliveries", "delivery_outcomes_daily", "delivery_latency_daily"):
        assert merged.nodes[model][3] == "MERGE", (model, merged.nodes[model])
    _assert_same_tables(warehouse, dataset, built.dataset)

    refreshed = warehouse.dbt(dataset, "run", "--full-refresh", *run_vars)
    assert refreshed.success and not refreshed.problems(), refreshed.problems()
    assert refreshed.nodes["int_deliveries"][3] == "CREATE TABLE"
    _assert_same_tables(warehouse, dataset, built.dataset)


def _assert_same_tables(warehouse: Warehouse, dataset: str, full: str) -> None:
    for model in MODELS:
        def rows(ds: str) -> list[tuple]:
            # The emulator reads the FCM export's _PARTITIONTIME as the query's current time
            # (tests/fcm_export_test.py): it differs between any two queries.
            return sorted((tuple(sorted((k, repr(v)) for k, v in row.items()
                                        if k != "partition_time"))
                           for row in _rows(warehouse, ds, model)))
        assert rows(dataset) == rows(full), model


# --------------------------------------------------------------------------------------------
# The singular test


def test_a_delivery_that_ends_twice_fails_the_build(warehouse: Warehouse, built: Settings,
                                                    new_story: Story) -> None:
    """The singular test catches a delivery with two terminal events (sent, then failed)."""
    dataset = "herald_dbt_conflict"
    story = new_story
    envelope = story.request(Channel.SMS, datetime(2026, 11, 2, 9, tzinfo=timezone.utc))
    story.delivery(envelope, "+15550000009", Status.SENT, 100)
    story.delivery(envelope, "+15550000009", Status.FAILED, 200,
                   reason=Reason.PROVIDER_ERROR.value, provider_code="30005")
    story.delivery(envelope, "+15550000009", Status.DELIVERED, 900)
    warehouse.load(dataset, story.rows)
    run = warehouse.dbt(dataset, "build", "--select", "stg_herald__events",
                        "stg_fcm__message_events", "int_deliveries",
                        "assert_one_terminal_event_per_delivery")
    assert not run.success
    status, failures, _, _ = run.nodes["assert_one_terminal_event_per_delivery"]
    assert (status, failures) == ("fail", 1)


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
    """The lists the project spells out (dbt_project.yml vars, model YAML) follow herald.events."""
    project_vars = yaml.safe_load((dbt_project.DBT_DIR / "dbt_project.yml").read_text())["vars"]
    delivery_terminal = {s.value for s in events.TERMINAL - {Status.DEAD_LETTER}}
    callbacks = {s.value for s in events.CALLBACK}
    assert set(project_vars["delivery_terminal_statuses"]) == delivery_terminal
    assert set(project_vars["callback_statuses"]) == callbacks

    precedence = project_vars["final_status_precedence"]
    # the status API's copy (herald/events.py) is the same table
    assert {stage: tuple(spec) for stage, spec in precedence.items()} == \
        events.FINAL_STATUS_PRECEDENCE
    neutral = {Status.PROVIDER_ACCEPTED.value, Status.DEFERRED.value, Status.OPTED_OUT.value,
               Status.OPTED_IN.value}
    assert set(precedence) == (delivery_terminal | callbacks) - neutral
    final_statuses = {outcome for _, outcome in precedence.values()}
    assert set(_model_accepted_values("intermediate/int_deliveries.yml", "final_status")) == \
        final_statuses
    assert set(_model_accepted_values("intermediate/int_deliveries.yml", "terminal_status")) == \
        delivery_terminal
    assert set(_model_accepted_values("marts/delivery_failures_daily.yml", "failure")) == \
        final_statuses - {"sent", "delivered", "suppressed", "duplicate"}
    assert set(_model_accepted_values("marts/opt_out_suppressions_daily.yml", "reason")) <= \
        {r.value for r in Reason}
    # By default only Android apps are taken to have enabled FCM's delivery data export; its
    # rejection events are herald/providers/fcm/export.py's.
    assert project_vars["fcm_export_platforms"] == [export.SdkPlatform.ANDROID.lower()]
    assert set(project_vars["fcm_export_rejection_events"]) == set(export.REJECTIONS)
    for model_yaml in ("marts/delivery_rates_daily.yml", "marts/send_latency.yml",
                       "marts/delivery_outcomes_daily.yml", "marts/delivery_funnel_daily.yml",
                       "marts/send_slo_daily.yml", "marts/delivery_latency_daily.yml"):
        assert _model_accepted_values(model_yaml, "channel") == [c.value for c in Channel]


def test_every_model_has_a_yaml_with_a_description() -> None:
    models = dbt_project.DBT_DIR / "models"
    for sql in models.rglob("*.sql"):
        document = yaml.safe_load(sql.with_suffix(".yml").read_text())
        (model,) = document["models"]
        assert model["name"] == sql.stem and model["description"].strip(), sql
