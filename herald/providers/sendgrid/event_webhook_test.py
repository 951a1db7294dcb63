"""SendGrid's Event Webhook: every documented event fixture read right, and its signature."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald.callback_events import DeliveryCallback
from herald.contracts import ContractError
from herald.providers import contract_fixtures
from herald.providers.sendgrid import event_webhook
from herald.sandbox import SendGridSigner

FIXTURES = contract_fixtures.load("sendgrid", "events")


def matches(callback: DeliveryCallback, expected: dict[str, Any]) -> bool:
    return all(getattr(callback, name) == value for name, value in expected.items())


def test_every_documented_event_type_has_a_fixture_and_a_row():
    seen = {event.get("event") for fixture in FIXTURES.values() for event in fixture["events"]}

    assert set(event_webhook.EVENT_TYPES) <= seen
    assert all(row.source.startswith(event_webhook.REFERENCE)
               for row in event_webhook.EVENT_TYPES.values())


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_documented_payload_is_read_as_documented(name):
    fixture = FIXTURES[name]

    batch = event_webhook.read_events(fixture["events"])

    expected = fixture["expected"]
    assert len(batch.callbacks) == len(expected["callbacks"])
    for callback, wanted in zip(batch.callbacks, expected["callbacks"]):
        assert matches(callback, {k: v for k, v in wanted.items()}), (callback, wanted)
        assert callback.provider == "sendgrid"
        assert (callback.address is not None) == (callback.status.value == "opted_out")
    assert dict(batch.ignored) == expected["ignored"]
    assert batch.invalid == expected["invalid"]


def test_a_dropped_events_reason_is_its_reason_not_its_smtp_status():
    [dropped] = event_webhook.read_events(FIXTURES["dropped_bounced_address"]["events"]).callbacks

    assert (dropped.reason, dropped.provider_code) == ("Bounced Address", "5.0.0")


def test_the_same_event_twice_has_one_callback_id_and_distinct_events_do_not():
    events = FIXTURES["batch"]["events"]

    first = event_webhook.read_events(events).callbacks
    again = event_webhook.read_events(json.loads(json.dumps(events))).callbacks

    assert [c.callback_id for c in first] == [c.callback_id for c in again]
    assert len({c.callback_id for c in first}) == len(first)


@pytest.mark.parametrize("body", [b"{}", b"[", b"null", b"\xff"])
def test_a_body_that_is_not_an_event_array_is_a_contract_error(body):
    with pytest.raises(ContractError):
        event_webhook.parse_body(body)


@pytest.mark.parametrize("junk", [None, 1, "x", [], {"event": 1}, {}])
def test_junk_in_a_batch_is_counted_never_raised(junk):
    batch = event_webhook.read_events([junk, FIXTURES["delivered"]["events"][0]])

    assert [c.status.value for c in batch.callbacks] == ["delivered"]
    assert sum(batch.ignored.values()) + batch.invalid == 1


def test_bounce_without_a_documented_type_is_invalid():
    event = {**FIXTURES["bounce_hard"]["events"][0], "type": "soft"}

    assert event_webhook.read_events([event]).invalid == 1


SIGNER = SendGridSigner.generate()


def headers(body: bytes, signer: SendGridSigner = SIGNER, timestamp: str = "1700000030"):
    return {event_webhook.SIGNATURE_HEADER: signer.sign(timestamp, body),
            event_webhook.TIMESTAMP_HEADER: timestamp}.get


def test_the_signed_event_webhook_verifies_and_a_tampered_one_does_not():
    body = json.dumps(FIXTURES["batch"]["events"]).encode()

    assert event_webhook.signed(SIGNER.public_key, body, headers(body))
    assert not event_webhook.signed(SIGNER.public_key, body + b" ", headers(body))
    assert not event_webhook.signed(SIGNER.public_key, body,
                                    headers(body, SendGridSigner.generate()))
    assert not event_webhook.signed(SIGNER.public_key, body, {}.get)


@pytest.mark.parametrize("key", [None, "", "bm90IGEga2V5"])
def test_a_missing_or_invalid_public_key_is_the_operators_error(key):
    with pytest.raises(ValueError):
        event_webhook.signed(key, b"[]", headers(b"[]"))
