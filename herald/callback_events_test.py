"""The normalised callback record: its ids, its JSON and Pub/Sub round trips, and its event rows."""

from __future__ import annotations

import pytest

from herald.callback_events import DeliveryCallback, callback
from herald.contracts import ContractError
from herald.events import EVENT_FIELDS, Status

AT = "2026-11-02T10:00:00.000000Z"


def bounced() -> DeliveryCallback:
    return callback("sendgrid", Status.BOUNCED, AT, ("msg.filter0", 1700000000, "ev-1"),
                    provider_message_id="msg", notification_id="n-1", span_id="s-1",
                    provider_code="5.1.1", reason="Invalid Address", detail="550 no such user",
                    bounce_type="bounce")


def test_the_callback_id_names_the_providers_event_and_nothing_else():
    same = callback("twilio", Status.DELIVERED, "2026-11-02T10:00:05.000000Z", ("SM1", "delivered", None))
    first = callback("twilio", Status.DELIVERED, AT, ("SM1", "delivered", None))
    others = [callback("twilio", Status.DELIVERED, AT, ("SM2", "delivered", None)),
              callback("twilio", Status.UNDELIVERED, AT, ("SM1", "delivered", None)),
              callback("sendgrid", Status.DELIVERED, AT, ("SM1", "delivered", None))]

    assert first.callback_id == same.callback_id
    assert len({first.callback_id, *(other.callback_id for other in others)}) == 4


def test_json_and_pubsub_round_trips():
    record = bounced()

    data, attributes = record.to_pubsub()

    assert DeliveryCallback.from_json(record.to_json()) == record
    assert DeliveryCallback.from_pubsub(data) == record
    assert attributes == {"provider": "sendgrid", "status": "bounced",
                          "callback_id": record.callback_id}


@pytest.mark.parametrize(("change", "field"), [
    ({"provider": None}, "provider"),
    ({"provider": "pigeon"}, "provider"),
    ({"provider_message_id": ""}, "provider_message_id"),
    ({"span_id": 7}, "span_id"),
    ({"status": "sent"}, "status"),
    ({"machine_open": "yes"}, "machine_open"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"callback_id": None}, "callback_id"),
])
def test_from_json_rejects_a_malformed_record(change, field):
    with pytest.raises(ContractError) as raised:
        DeliveryCallback.from_json({**bounced().to_json(), **change})

    assert raised.value.field == field


@pytest.mark.parametrize("data", [b"{not json", b"[]"])
def test_from_pubsub_rejects_what_is_not_a_record(data):
    with pytest.raises(ContractError):
        DeliveryCallback.from_pubsub(data)


def test_the_event_row_carries_what_the_provider_said():
    row = bounced().to_event()

    assert set(row) == {f.name for f in EVENT_FIELDS}
    assert {k: row[k] for k in ("status", "channel", "span_id", "provider_code", "reason",
                                "detail", "bounce_type", "event_ts")} == {
        "status": "bounced", "channel": "email", "span_id": "s-1", "provider_code": "5.1.1",
        "reason": "Invalid Address", "detail": "550 no such user", "bounce_type": "bounce",
        "event_ts": AT}


def test_a_machine_open_and_a_persons_open_are_two_events_a_repeat_is_one():
    def opened(machine: bool, event: str) -> dict:
        return callback("sendgrid", Status.OPENED, AT, ("m", event), span_id="s-1",
                        machine_open=machine).to_event()

    assert opened(True, "e1")["event_id"] != opened(False, "e2")["event_id"]
    assert opened(False, "e2")["event_id"] == opened(False, "e3")["event_id"]


def test_an_opt_out_about_no_delivery_is_one_event_per_user():
    stop = callback("twilio", Status.OPTED_OUT, AT, ("SMin",), provider_message_id="SMin",
                    reason="STOP", address="+15551234567")

    rows = [stop.to_event(user_id=user, recipient_hash="h") for user in ("u-1", "u-2")]

    assert [r["user_id"] for r in rows] == ["u-1", "u-2"]
    assert rows[0]["event_id"] != rows[1]["event_id"]
    assert all(r["recipient_hash"] == "h" and r["channel"] == "sms" for r in rows)
    assert "+15551234567" not in repr(rows)
