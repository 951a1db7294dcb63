import pytest

from herald.bench.analysis import (Observation, analyse, delivery_outcomes, drain_rate,
                                   expected_deliveries, phase_bodies, receives_everything)
from herald.bench.load import OpenRecord
from herald.local.seed import demo_users


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def test_phase_bodies_only_address_users_who_receive_everything() -> None:
    users = {user.user_id: user for user in demo_users(300)}
    bodies, expected = phase_bodies("t", 200, 300)
    assert len({body["notificationId"] for body in bodies}) == 200
    assert {body["notificationType"] for body in bodies} == {"push", "sms", "email"}
    for body in bodies:
        user = users[body["userId"]]
        assert receives_everything(user)
        assert expected[body["notificationId"]] == expected_deliveries(user, body["notificationType"])
    assert any(value > 1 for value in expected.values())  # multi-device push fans out


def test_receives_everything_excludes_each_kind_of_opt_out() -> None:
    users = {user.user_id: user for user in demo_users(40)}
    assert not receives_everything(users["user-00003"])  # opted out entirely
    assert not receives_everything(users["user-00007"])  # marketing off
    assert not receives_everything(users["user-00009"])  # sms off
    assert not receives_everything(users["user-00005"])  # a disabled device
    assert not receives_everything(users["user-00013"])  # an unregistered token
    assert not receives_everything(users["user-00017"])  # no phone
    assert receives_everything(users["user-00001"])


def _record(index: int, scheduled: float, answered: float | None, status: int = 202) -> OpenRecord:
    return OpenRecord(index, scheduled, sent=scheduled, answered=answered,
                      status=status if answered is not None else None)


def test_analyse_latency_censoring_and_backlog() -> None:
    start = 1_000.0
    ids = ["n0", "n1", "n2", "n3"]
    expected = {"n0": 1, "n1": 2, "n2": 1, "n3": 1}
    records = [_record(0, start, start + 0.01), _record(1, start + 0.5, start + 0.51),
               _record(2, start + 1.0, start + 1.01), _record(3, start + 1.5, None)]
    records[3].error = "ConnectionError"
    ledger = [{"notification_id": "n0", "time": _iso(start + 0.51)},
              {"notification_id": "n1", "time": _iso(start + 1.01)},  # 1 of 2 deliveries
              {"notification_id": "other", "time": _iso(start + 1.0)}]
    out = analyse(Observation(records, ids, expected, ledger, start, 2.0, start + 3.0, 2.0))
    assert out["requests_offered"] == 4 and out["requests_accepted"] == 3
    assert out["request_errors"] == {"ConnectionError": 1}
    assert out["deliveries_expected"] == 4 and out["deliveries_seen"] == 2
    assert out["requests_completed"] == 1
    delivery = out["latency_delivery"]
    assert delivery["count"] == 4 and delivery["censored"] == 2
    assert delivery["p99_s"] == "inf" and delivery["max_seen_s"] == pytest.approx(0.5, abs=1e-3)
    assert out["latency_request_complete"]["censored"] == 2
    assert out["timeline"][-1] == {"t_s": 3.0, "offered": 4, "sent": 4, "accepted": 3,
                                   "delivered": 1, "backlog": 2}
    assert out["accepted_rate"] == pytest.approx(1.5)
    assert out["delivered_rate"] == pytest.approx(0.5)
    assert not out["sustained"]


def test_analyse_calls_a_kept_up_steady_load_sustained() -> None:
    start, rate, duration = 0.0, 10.0, 10.0
    count = int(rate * duration)
    ids = [f"n{i}" for i in range(count)]
    records = [_record(i, start + i / rate, start + i / rate + 0.01) for i in range(count)]
    ledger = [{"notification_id": f"n{i}", "time": _iso(start + i / rate + 0.2)}
              for i in range(count)]
    out = analyse(Observation(records, ids, {nid: 1 for nid in ids}, ledger, start, duration,
                              start + duration + 1, rate))
    assert out["sustained"]
    assert abs(out["backlog_growth_per_s"]) < 0.5
    assert out["latency_delivery"]["p99_s"] == pytest.approx(0.19, abs=0.01)


def test_drain_rate_counts_first_to_last() -> None:
    assert drain_rate([10.0, 11.0, 12.0])["rate_per_s"] == pytest.approx(1.0)
    assert drain_rate([5.0])["rate_per_s"] is None
    assert drain_rate([])["completed"] == 0


def test_delivery_outcomes_name_the_requests_a_delivery_of_which_never_arrived() -> None:
    entries = [{"notification_id": "n-1", "recipient": "a"},
               {"notification_id": "n-1", "recipient": "a"},
               {"notification_id": "n-2", "recipient": "b"}]
    outcomes = delivery_outcomes(entries, {"n-1": 1, "n-2": 2, "n-3": 1})
    assert (outcomes["lost"], outcomes["duplicates"]) == (2, 1)
    assert outcomes["lost_notification_ids"] == ["n-2", "n-3"]
