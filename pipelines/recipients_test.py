"""plan_deliveries: which deliveries a request fans out to, and why each one may not be sent."""

from __future__ import annotations

from functools import partial

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from herald.contracts import Channel, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.events import Reason, Status
from herald.settings import Settings
from pipelines.directory import Directory
from pipelines.recipients import DEAD_LETTERS, EVENTS, ResolveRecipients, plan_deliveries
from pipelines.resources import ProcessResource

KEY = b"k"
USER = {"notification_enabled": True, "categories": {"marketing": False},
        "channels": {"sms": False}, "email": "a@example.com", "phone": "+15550000001"}
DEVICES = {
    "d1": {"platform": "ios", "token": "tok-1", "notification_enabled": True},
    "d2": {"platform": "android", "token": "tok-2", "notification_enabled": False},
    "d3": {"platform": "web", "token": "tok-3"},
}


def envelope(**changes):
    """DESIGN_BODY for every device (no deviceInfo) with `changes`."""
    return new_envelope(parse_request({**DESIGN_BODY, "metadata": {}, **changes}), "svc")


def reasons(env, user=USER, devices=DEVICES):
    return [(d.device_id, d.channel, reason)
            for d, reason in plan_deliveries(env, "u-1", user, devices, KEY)]


def test_push_fans_out_to_every_device_and_suppresses_the_disabled_one() -> None:
    assert reasons(envelope()) == [("d1", Channel.PUSH, None),
                                   ("d2", Channel.PUSH, Reason.DEVICE_DISABLED),
                                   ("d3", Channel.PUSH, None)]


@pytest.mark.parametrize("changes, user_changes, expected", [
    ({}, {"notification_enabled": False}, Reason.USER_OPTED_OUT),
    ({"categoryType": "marketing"}, {}, Reason.CATEGORY_OPTED_OUT),
    ({"notificationType": "sms"}, {}, Reason.CHANNEL_OPTED_OUT),
    ({"notificationType": "email"}, {"email": None}, Reason.NO_ADDRESS),
    ({"notificationType": "email"},
     {"provider_opt_outs": {"email": {"source": "sendgrid", "reason": "unsubscribe"}}},
     Reason.PROVIDER_OPTED_OUT),
    ({"notificationType": "email"},
     {"provider_opt_outs": {"sms": {"source": "twilio", "reason": "21610"}}}, None),
    ({"notificationType": "email"}, {}, None),
])
def test_broadest_switch_is_the_reason(changes, user_changes, expected) -> None:
    planned = reasons(envelope(**changes), {**USER, **user_changes})
    assert {reason for *_, reason in planned} == {expected}


@pytest.mark.parametrize("device_info, expected", [
    ("iOS", ["d1"]), ("ios", ["d1"]), ("Android", ["d2"]), ("WEB", ["d3"]), ("laptop", ["d3"]),
    ("Desktop", ["d3"]),
])
def test_device_info_targets_one_platform(device_info, expected) -> None:
    """Issue 12: a push with deviceInfo "Android" for a user with an Android and a web device went
    to both; it goes only to the devices of the platform named, in any case."""
    planned = reasons(envelope(metadata={"deviceInfo": device_info}))
    assert [device_id for device_id, *_ in planned] == expected


def test_device_info_with_no_device_of_that_platform_is_one_undeliverable_delivery() -> None:
    only_web = {"d3": DEVICES["d3"]}
    assert reasons(envelope(metadata={"deviceInfo": "iOS"}), devices=only_web) == [
        (None, Channel.PUSH, Reason.NO_ADDRESS)]


def test_device_info_does_not_change_sms_or_email() -> None:
    assert reasons(envelope(notificationType="email", metadata={"deviceInfo": "android"})) == [
        (None, Channel.EMAIL, None)]


def test_user_opt_out_wins_over_a_disabled_device() -> None:
    planned = reasons(envelope(), {**USER, "notification_enabled": False})
    assert [reason for *_, reason in planned] == [Reason.USER_OPTED_OUT] * 3


def test_unknown_user_and_no_devices_are_one_undeliverable_delivery_each() -> None:
    assert [r for *_, r in reasons(envelope(), user=None)] == [Reason.UNKNOWN_USER]
    assert [r for *_, r in reasons(envelope(), devices={})] == [Reason.NO_ADDRESS]


def test_events_hold_a_keyed_hash_never_the_address() -> None:
    [(delivery, _)] = plan_deliveries(envelope(notificationType="email"), "u-1", USER, {}, KEY)
    event = delivery.event(Status.SENT)
    assert "a@example.com" not in str(event)
    assert event["recipient_hash"] and event["parent_span_id"] != event["span_id"]



def test_each_user_of_a_bulk_request_is_a_delivery_of_its_own() -> None:
    bulk = new_envelope(parse_request({**{k: v for k, v in DESIGN_BODY.items() if k != "userId"},
                                       "userIds": ["u-1", "u-2", "u-3"],
                                       "notificationType": "email"}), "svc")
    users = {"u-1": USER, "u-2": {**USER, "email": "b@example.com"}}
    planned = [(delivery, reason) for user_id in bulk.request.recipient_ids
               for delivery, reason in plan_deliveries(bulk, user_id, users.get(user_id), {}, KEY)]
    assert [(d.user_id, d.address, reason) for d, reason in planned] == [
        ("u-1", "a@example.com", None), ("u-2", "b@example.com", None),
        ("u-3", None, Reason.UNKNOWN_USER)]
    events = [d.event(Status.SENT) for d, _ in planned]
    assert [e["user_id"] for e in events] == ["u-1", "u-2", "u-3"]
    assert len({e["span_id"] for e in events}) == 3  # an unknown user's span is still its own


def test_a_device_disabled_by_token_hygiene_after_acceptance_is_still_planned() -> None:
    """A redelivery plans as the original did; a request accepted afterwards skips the device."""
    request = envelope()
    dead = {"d1": {**DEVICES["d1"], "notification_enabled": False, "disabled_reason": "UNREGISTERED"}}
    after = {"d1": {**dead["d1"], "disabled_at": "2999-01-01T00:00:00.000000Z"}}
    before = {"d1": {**dead["d1"], "disabled_at": "2000-01-01T00:00:00Z"}}
    assert reasons(request, devices=after) == [("d1", Channel.PUSH, None)]
    assert reasons(request, devices=before) == [("d1", Channel.PUSH, Reason.DEVICE_DISABLED)]
    assert reasons(request, devices={"d1": {**DEVICES["d1"], "notification_enabled": False}}) == \
        [("d1", Channel.PUSH, Reason.DEVICE_DISABLED)]  # switched off by its user: always skipped


def test_a_bulk_push_has_a_delivery_id_per_user_and_device() -> None:
    """Issue 9: three users with 2, 3 and 2 devices, all named dev-0, dev-1, ...: 7 deliveries,
    7 distinct ids (they were 3 when the id ignored the user)."""
    bulk = new_envelope(parse_request({**{k: v for k, v in DESIGN_BODY.items() if k != "userId"},
                                       "userIds": ["u-1", "u-2", "u-3"], "metadata": {}}), "svc")
    counts = {"u-1": 2, "u-2": 3, "u-3": 2}
    spans = [delivery.span_id for user_id, n in counts.items()
             for delivery, _ in plan_deliveries(bulk, user_id, USER, {
                 f"dev-{i}": {"platform": "android", "token": f"{user_id}-tok-{i}"}
                 for i in range(n)}, KEY)]
    assert len(spans) == len(set(spans)) == 7


def test_malformed_app_documents_read_as_unset_never_raise() -> None:
    """The user and device documents are the app's: a list where a map belongs, a number for a
    token or phone, an unknown platform, a foreign timestamp. None of them may fail the request."""
    user = {"categories": ["marketing"], "channels": "all", "phone": 15550000001,
            "email": "a@example.com"}
    devices = {"d1": {"platform": "windows", "token": "tok-1"},
               "d2": {"platform": "ios", "token": 42},
               "d3": {"platform": "android", "token": "tok-3", "notification_enabled": False,
                      "disabled_reason": "UNREGISTERED", "disabled_at": "yesterday"}}
    assert reasons(envelope(), user, devices) == [("d1", Channel.PUSH, None),
                                                  ("d2", Channel.PUSH, Reason.NO_ADDRESS),
                                                  ("d3", Channel.PUSH, Reason.DEVICE_DISABLED)]
    [(d1, _), *_] = plan_deliveries(envelope(), "u-1", user, devices, KEY)
    assert d1.platform is None
    assert reasons(envelope(notificationType="sms"), user) == [(None, Channel.SMS, Reason.NO_ADDRESS)]


class _BuggyDirectory(Directory):
    """The real Directory on the emulator, failing (like a bug would) on one user's lookup."""

    def users_and_devices(self, user_ids, push_user_ids):
        if "poison" in user_ids:
            raise ValueError("a bug reading user 'poison'")
        return super().users_and_devices(user_ids, push_user_ids)


def test_a_request_that_fails_its_lookup_is_parked_and_its_batch_goes_on(firestore_emulator) -> None:
    """Issue 9: one request's failure while looking it up parks that request (`unprocessable`,
    with the error) instead of failing the batch it shares with others, or the pipeline."""
    settings = Settings(project="resolve-isolation")
    poison = envelope(userId="poison")
    good = envelope(userId="someone", notificationType="email")
    with BeamTestPipeline() as p:
        resolved = (p | beam.Create([poison, good])
                    | ResolveRecipients(settings, ProcessResource(partial(_BuggyDirectory, settings)),
                                        lambda delivery: delivery.dedupe_key))
        assert_that(resolved[EVENTS] | "Events" >> beam.Map(
                        lambda e: (e["user_id"], e["status"], e["reason"])),
                    equal_to([("poison", "dead_letter", "unprocessable"),
                              ("someone", "resolved", None),
                              ("someone", "failed", "unknown_user")]), label="events")
        assert_that(resolved[DEAD_LETTERS] | "Parked" >> beam.Map(
                        lambda d: (d.reason, d.attributes["trace_id"], "a bug" in d.detail)),
                    equal_to([("unprocessable", poison.trace_id, True)]), label="parked")
