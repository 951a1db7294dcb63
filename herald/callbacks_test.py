"""The normalised callback record: provider mappings, ids for duplicates, and its JSON round
trip."""

from __future__ import annotations

from typing import Any

import pytest

from herald.callbacks import DeliveryCallback, from_sendgrid, from_twilio
from herald.events import Status
from herald.contracts import ContractError

SID = "SM" + "a" * 32
IDS = {"notification_id": "n-1", "span_id": "s-1"}
RECEIVED = "2026-11-02T10:00:00.000000Z"
X_MESSAGE_ID = "Kx9_w-2pQ3a1b2c3d4e5fA"


def twilio_form(status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": SID, "MessageStatus": status, "AccountSid": "AC1", "To": "+15551234567",
            "From": "+15550000000", **extra}


def sendgrid_event(event: str, **extra: Any) -> dict[str, Any]:
    return {"email": "a@x.io", "timestamp": 1700000000, "event": event,
            "sg_event_id": "ev-1", "sg_message_id": f"{X_MESSAGE_ID}.filterdrecv-5645d9c87f-0.0",
            **IDS, **extra}


@pytest.mark.parametrize(("status", "extra", "expected", "code"), [
    ("sent", {}, Status.PROVIDER_ACCEPTED, None),
    ("delivered", {}, Status.DELIVERED, None),
    ("undelivered", {"ErrorCode": "30003"}, Status.UNDELIVERED, "30003"),
    ("failed", {"ErrorCode": "30008"}, Status.UNDELIVERED, "30008"),
    ("read", {}, Status.OPENED, None),
])
def test_twilio_statuses_are_normalised(status, extra, expected, code):
    callback = from_twilio(twilio_form(status, **extra), IDS, RECEIVED)

    assert (callback.provider, callback.provider_message_id, callback.status) == (
        "twilio", SID, expected)
    assert (callback.notification_id, callback.span_id) == ("n-1", "s-1")
    assert callback.provider_code == code
    assert callback.occurred_at == RECEIVED  # Twilio's callbacks carry no event time


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "receiving"])
def test_twilio_statuses_herald_does_not_track_are_none(status):
    assert from_twilio(twilio_form(status), IDS, RECEIVED) is None


def test_twilio_callback_without_ids_in_the_url_has_none():
    callback = from_twilio(twilio_form("delivered"), {"span_id": ""}, RECEIVED)

    assert (callback.notification_id, callback.span_id) == (None, None)


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_twilio_callback_needs_sid_and_status(missing):
    form = {k: v for k, v in twilio_form("sent").items() if k != missing}

    with pytest.raises(ContractError) as raised:
        from_twilio(form, IDS, RECEIVED)

    assert raised.value.field == missing


def test_a_repeated_twilio_callback_has_the_same_id():
    first = from_twilio(twilio_form("delivered"), IDS, RECEIVED)
    again = from_twilio(twilio_form("delivered"), IDS, "2026-11-02T10:00:05.000000Z")
    others = [from_twilio(twilio_form("sent"), IDS, RECEIVED),
              from_twilio({**twilio_form("delivered"), "MessageSid": "SM" + "b" * 32}, IDS,
                          RECEIVED),
              from_twilio(twilio_form("undelivered", ErrorCode="30003"), IDS, RECEIVED),
              from_twilio(twilio_form("undelivered", ErrorCode="30005"), IDS, RECEIVED)]

    assert first.callback_id == again.callback_id
    assert len({first.callback_id, *(other.callback_id for other in others)}) == 5


@pytest.mark.parametrize(("event", "extra", "expected", "code"), [
    ("processed", {}, Status.PROVIDER_ACCEPTED, None),
    ("delivered", {"response": "250 OK"}, Status.DELIVERED, None),
    ("bounce", {"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user"},
     Status.BOUNCED, "5.1.1"),
    ("dropped", {"reason": "Bounced Address"}, Status.DROPPED, "Bounced Address"),
    ("deferred", {"response": "451 later", "attempt": "1"}, Status.DEFERRED, None),
    ("open", {"useragent": "x"}, Status.OPENED, None),
    ("click", {"url": "https://x.io"}, Status.CLICKED, None),
])
def test_sendgrid_events_are_normalised(event, extra, expected, code):
    callback = from_sendgrid(sendgrid_event(event, **extra))

    assert (callback.provider, callback.provider_message_id, callback.status) == (
        "sendgrid", X_MESSAGE_ID, expected)
    assert (callback.notification_id, callback.span_id) == ("n-1", "s-1")
    assert callback.provider_code == code
    assert callback.occurred_at == "2023-11-14T22:13:20.000000Z"


@pytest.mark.parametrize("event", ["spamreport", "unsubscribe", "group_resubscribe"])
def test_sendgrid_events_herald_does_not_track_are_none(event):
    assert from_sendgrid(sendgrid_event(event)) is None


@pytest.mark.parametrize(("event", "field"), [
    ("not an object", "event"),
    ({k: v for k, v in sendgrid_event("open").items() if k != "event"}, "event"),
    ({k: v for k, v in sendgrid_event("open").items() if k != "sg_message_id"}, "sg_message_id"),
    ({k: v for k, v in sendgrid_event("open").items() if k != "timestamp"}, "timestamp"),
    (sendgrid_event("open", timestamp="1700000000"), "timestamp"),
    (sendgrid_event("open", timestamp=True), "timestamp"),
    (sendgrid_event("open", timestamp=10 ** 20), "timestamp"),
])
def test_malformed_sendgrid_events_name_the_field(event, field):
    with pytest.raises(ContractError) as raised:
        from_sendgrid(event)

    assert raised.value.field == field


def test_a_repeated_sendgrid_event_has_the_same_id_and_a_second_open_does_not():
    first = from_sendgrid(sendgrid_event("open"))
    retried = from_sendgrid(sendgrid_event("open"))
    second_open = from_sendgrid(sendgrid_event("open", sg_event_id="ev-2"))

    assert first.callback_id == retried.callback_id
    assert second_open.callback_id != first.callback_id


def test_json_and_pubsub_round_trips():
    callback = from_sendgrid(sendgrid_event("bounce", status="5.1.1"))

    data, attributes = callback.to_pubsub()

    assert DeliveryCallback.from_json(callback.to_json()) == callback
    assert DeliveryCallback.from_pubsub(data) == callback
    assert attributes == {"provider": "sendgrid", "status": "bounced",
                          "callback_id": callback.callback_id}
    assert callback.to_json() == {
        "provider": "sendgrid", "provider_message_id": X_MESSAGE_ID, "notification_id": "n-1",
        "span_id": "s-1", "status": "bounced", "provider_code": "5.1.1",
        "occurred_at": "2023-11-14T22:13:20.000000Z", "callback_id": callback.callback_id}


@pytest.mark.parametrize(("change", "field"), [
    ({"provider": None}, "provider"),
    ({"provider_message_id": ""}, "provider_message_id"),
    ({"span_id": 7}, "span_id"),
    ({"status": "sent"}, "status"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"callback_id": None}, "callback_id"),
])
def test_from_json_rejects_a_malformed_record(change, field):
    body = {**from_twilio(twilio_form("sent"), IDS, RECEIVED).to_json(), **change}

    with pytest.raises(ContractError) as raised:
        DeliveryCallback.from_json(body)

    assert raised.value.field == field


@pytest.mark.parametrize("data", [b"{not json", b"[]"])
def test_from_pubsub_rejects_what_is_not_a_record(data):
    with pytest.raises(ContractError):
        DeliveryCallback.from_pubsub(data)
