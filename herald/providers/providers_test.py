"""The senders, through the official SDKs, against a real sandbox on a free local port."""

from __future__ import annotations

import dataclasses

import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import firebase_admin
import pytest
import requests
from firebase_admin import messaging

from herald.contracts import Channel, Platform, Priority
from herald.providers.base import ErrorClass, Outgoing, Sender, class_of_status
from herald.providers.fcm import labels
from herald.providers.fcm.sender import FcmSender, build_message
from herald.providers.sendgrid.sender import SendGridSender
from herald.providers.twilio.sender import TwilioSender
from herald.sandbox import SandboxServer

PROJECT = "herald-local"
GOOD_ADDRESS = {Channel.PUSH: "tok-{i}", Channel.SMS: "+1555000{i:04d}",
                Channel.EMAIL: "user{i}@example.com"}
BAD_ADDRESS = {Channel.PUSH: ("unregistered-{i}", "UNREGISTERED"),
               Channel.SMS: ("555-{i}", "21211"),
               Channel.EMAIL: ("user {i}@example.com", "INVALID_ADDRESS")}

SenderFactory = Callable[..., Sender]


def make_sender(channel: Channel, endpoint: str, **options: Any) -> Sender:
    """A sender of `channel` aimed at `endpoint`; FCM apps get unique names so tests can coexist."""
    if channel is Channel.PUSH:
        return FcmSender(options.pop("project_id", PROJECT), endpoint,
                         app_name=f"test-{uuid.uuid4().hex}", **options)
    if channel is Channel.SMS:
        return TwilioSender("AC" + "0" * 32, "auth-token", "+15550001111", endpoint,
                            status_callback_base="http://herald-api.test", **options)
    return SendGridSender("SG.key", "herald@example.com", endpoint, **options)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(latency_ms=2, project=PROJECT) as server:
        yield server


@pytest.fixture
def sender_for() -> Iterator[SenderFactory]:
    """make_sender, closing every sender it made after the test."""
    made: list[Sender] = []

    def factory(channel: Channel, endpoint: str, **options: Any) -> Sender:
        made.append(make_sender(channel, endpoint, **options))
        return made[-1]

    yield factory
    for sender in made:
        sender.close()


def outgoing(channel: Channel, address: str, i: int = 0, **fields: Any) -> Outgoing:
    return Outgoing(span_id=f"span-{uuid.uuid4().hex[:8]}-{i}",
                    notification_id=f"notif-{uuid.uuid4().hex[:8]}", channel=channel,
                    address=address, title="Parcel", content="Out for delivery", **fields)


def ledger_by_span(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    entries = requests.get(f"{sandbox.url}/_ledger", timeout=5).json()["entries"]
    return {entry["span_id"]: entry for entry in entries}


@pytest.mark.parametrize("channel", list(Channel))
def test_sent_messages_land_in_the_ledger_with_their_ids(sandbox, sender_for, channel):
    batch = [outgoing(channel, GOOD_ADDRESS[channel].format(i=i), i) for i in range(3)]

    results = sender_for(channel, sandbox.url).send(batch)

    assert [r.span_id for r in results] == [item.span_id for item in batch]
    assert all(r.ok and r.error_code is None and r.provider_message_id for r in results)
    recorded = ledger_by_span(sandbox)
    assert len(recorded) == 3
    for item, result in zip(batch, results):
        entry = recorded[item.span_id]
        assert (entry["channel"], entry["recipient"], entry["notification_id"]) == (
            channel.value, item.address, item.notification_id)
        assert entry["provider_message_id"] == result.provider_message_id


@pytest.mark.parametrize("channel", list(Channel))
def test_a_rejected_address_is_a_permanent_failure_and_not_recorded(sandbox, sender_for, channel):
    address, code = BAD_ADDRESS[channel]
    item = outgoing(channel, address.format(i=1))

    [result] = sender_for(channel, sandbox.url).send([item])

    assert (result.ok, result.error_code, result.transient) == (False, code, False)
    assert result.error_message and result.provider_message_id is None
    assert ledger_by_span(sandbox) == {}


@pytest.mark.parametrize("channel", list(Channel))
def test_a_mixed_batch_of_50_keeps_input_order(sandbox, sender_for, channel):
    bad = {i for i in range(50) if i % 3 == 0}
    batch = [outgoing(channel, (BAD_ADDRESS[channel][0] if i in bad else GOOD_ADDRESS[channel])
                      .format(i=i), i) for i in range(50)]

    results = sender_for(channel, sandbox.url).send(batch)

    assert [r.span_id for r in results] == [item.span_id for item in batch]
    assert [i for i, r in enumerate(results) if not r.ok] == sorted(bad)
    assert set(ledger_by_span(sandbox)) == {batch[i].span_id for i in range(50) if i not in bad}


@pytest.mark.parametrize(("channel", "code"), [
    (Channel.PUSH, "UNAVAILABLE"), (Channel.SMS, "CONNECTION_ERROR"),
    (Channel.EMAIL, "CONNECTION_ERROR")])
def test_an_unreachable_endpoint_is_transient(sender_for, channel, code):
    with SandboxServer() as gone:
        endpoint = gone.url  # the port is closed once the sandbox has shut down

    [result] = sender_for(channel, endpoint).send([outgoing(channel, GOOD_ADDRESS[channel])])

    assert (result.ok, result.error_code, result.transient) == (False, code, True)


# firebase-admin reports its own read timeout as DEADLINE_EXCEEDED (its retries are off: Herald's
# RetryPolicy owns retrying).
@pytest.mark.parametrize(("channel", "code"), [
    (Channel.PUSH, "DEADLINE_EXCEEDED"), (Channel.SMS, "TIMEOUT"), (Channel.EMAIL, "TIMEOUT")])
def test_a_timeout_is_transient(sandbox, sender_for, channel, code):
    sandbox.configure({"latency_ms": 700})
    sender = sender_for(channel, sandbox.url, timeout_s=0.2)

    [result] = sender.send([outgoing(channel, GOOD_ADDRESS[channel].format(i=1))])

    assert (result.ok, result.error_code, result.transient) == (False, code, True)


def test_sendgrid_bulk_send_uses_one_request_per_1000_recipients(sandbox, sender_for):
    bulk = [dataclasses.replace(outgoing(Channel.EMAIL, f"r{i}@example.com", i),
                                notification_id="bulk-1") for i in range(2500)]
    other = [outgoing(Channel.EMAIL, f"o{i}@example.com", i) for i in range(3)]

    results = sender_for(Channel.EMAIL, sandbox.url).send(bulk + other)

    assert all(result.ok for result in results)
    assert [result.span_id for result in results] == [item.span_id for item in bulk + other]
    entries = ledger_by_span(sandbox)
    assert set(entries) == {item.span_id for item in bulk + other}
    bulk_requests = {entries[item.span_id]["request_index"] for item in bulk}
    other_requests = {entries[item.span_id]["request_index"] for item in other}
    assert len(bulk_requests) == 3  # ceil(2,500 / 1,000)
    assert len(other_requests) == 3 and not other_requests & bulk_requests


def test_fcm_does_not_repost_a_timed_out_message(sandbox, sender_for):
    sandbox.configure({"latency_ms": 500})
    item = outgoing(Channel.PUSH, GOOD_ADDRESS[Channel.PUSH].format(i=7))

    [result] = sender_for(Channel.PUSH, sandbox.url, timeout_s=0.2).send([item])
    time.sleep(1.2)  # let the sandbox finish answering whatever it was sent

    assert result.error_code == "DEADLINE_EXCEEDED"
    entries = requests.get(f"{sandbox.url}/_ledger", timeout=5).json()["entries"]
    assert [e["span_id"] for e in entries].count(item.span_id) <= 1


def test_sandbox_config_makes_a_send_slower(sandbox, sender_for):
    sender = sender_for(Channel.SMS, sandbox.url)

    def timed_send() -> float:
        started = time.perf_counter()
        [result] = sender.send([outgoing(Channel.SMS, "+15551230000")])
        assert result.ok
        return time.perf_counter() - started

    # The best of three: a loaded machine can stall any one request past a tight bound.
    fast = min(timed_send() for _ in range(3))
    requests.post(f"{sandbox.url}/_config", json={"latency_ms": 300}, timeout=5).raise_for_status()
    slow = timed_send()

    assert fast < 0.3 <= slow  # slow only once configured, by at least the latency


def test_fcm_for_another_project_is_permission_denied(sandbox, sender_for):
    sender = sender_for(Channel.PUSH, sandbox.url, project_id="someone-else")

    [result] = sender.send([outgoing(Channel.PUSH, "tok-1")])

    assert (result.ok, result.error_code, result.transient) == (False, "PERMISSION_DENIED", False)


def test_fcm_message_the_sdk_refuses_fails_alone(sandbox, sender_for):
    batch = [outgoing(Channel.PUSH, "tok-1"), outgoing(Channel.PUSH, ""),
             outgoing(Channel.PUSH, "tok-2")]

    results = sender_for(Channel.PUSH, sandbox.url).send(batch)

    assert [(r.ok, r.error_code) for r in results] == [
        (True, None), (False, "INVALID_MESSAGE"), (True, None)]


def test_fcm_is_routed_through_the_pinned_private_url(sandbox, sender_for):
    # firebase-admin has no public endpoint option; this is the private attribute FcmSender sets.
    assert firebase_admin.__version__ == "7.7.0"
    sender = sender_for(Channel.PUSH, sandbox.url)

    service = messaging._get_messaging_service(sender._app)

    assert service._fcm_url == f"{sandbox.url}/v1/projects/{PROJECT}/messages:send"


@pytest.mark.parametrize(("platform", "priority", "expected"), [
    (Platform.IOS, Priority.HIGH, {"apns": {"headers": {"apns-priority": "10"}}}),
    (Platform.ANDROID, Priority.LOW, {"android": {"priority": "normal"}}),
    (Platform.WEB, Priority.HIGH, {"webpush": {"headers": {"Urgency": "high"}}}),
    (None, Priority.NORMAL, {"apns": {"headers": {"apns-priority": "5"}},
                             "android": {"priority": "normal"},
                             "webpush": {"headers": {"Urgency": "normal"}}}),
])
def test_fcm_message_carries_platform_priority_and_ids(platform, priority, expected):
    item = outgoing(Channel.PUSH, "tok-9", platform=platform, priority=priority,
                    data={"order": "42"})

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no token deprecation warning
        encoded = messaging._MessagingService.encode_message(build_message(item))

    assert encoded["token"] == "tok-9"
    assert encoded["data"] == {"order": "42", "notification_id": item.notification_id,
                               "span_id": item.span_id}
    assert encoded["notification"] == {"title": "Parcel", "body": "Out for delivery"}
    assert labels.valid(encoded["fcm_options"]["analytics_label"])
    assert {key: encoded[key] for key in ("apns", "android", "webpush") if key in encoded} == expected


@pytest.mark.parametrize(("status", "error_class"), [
    (None, ErrorClass.TRANSIENT), (400, ErrorClass.PERMANENT), (401, ErrorClass.CONFIGURATION),
    (403, ErrorClass.CONFIGURATION), (404, ErrorClass.PERMANENT), (429, ErrorClass.RATE_LIMITED),
    (500, ErrorClass.TRANSIENT), (503, ErrorClass.TRANSIENT)])
def test_an_undocumented_code_is_classified_by_its_http_status(status, error_class):
    assert class_of_status(status) is error_class


def test_sendgrid_bad_addresses_in_a_bulk_of_1000_fail_alone_and_the_rest_go_once(sandbox,
                                                                                sender_for):
    bad = {500: ("bad@invalid", "400", ErrorClass.UNREACHABLE),  # SendGrid refuses it
           700: ("user 700@example.com", "INVALID_ADDRESS", ErrorClass.UNREACHABLE),  # a space
           800: ("Ann <ann@example.com>", "INVALID_ADDRESS", ErrorClass.UNREACHABLE)}  # a name
    bulk = [dataclasses.replace(
        outgoing(Channel.EMAIL, bad[i][0] if i in bad else f"r{i}@example.com", i),
        notification_id="bulk-1") for i in range(1000)]

    results = sender_for(Channel.EMAIL, sandbox.url).send(bulk)

    assert {i: (r.error_code, r.error_class) for i, r in enumerate(results) if not r.ok} == {
        i: (code, error_class) for i, (_, code, error_class) in bad.items()}
    entries = requests.get(f"{sandbox.url}/_ledger", timeout=5).json()["entries"]
    sent = [entry["span_id"] for entry in entries]
    assert sorted(sent) == sorted(item.span_id for i, item in enumerate(bulk) if i not in bad)
    assert {entry["recipient"] for entry in entries} & {"ann@example.com", "user700@example.com"} == set()


def test_a_push_reaches_fcm_with_the_analytics_label_of_its_category_and_template(sandbox,
                                                                                   sender_for):
    scheme = labels.AnalyticsLabels.parse("parcel_update.out_for_delivery")
    sender = sender_for(Channel.PUSH, sandbox.url, labels=scheme)
    listed = outgoing(Channel.PUSH, "tok-1", category="parcel_update",
                      template="out_for_delivery")
    other = outgoing(Channel.PUSH, "tok-2", 1, category="promotions", template="sale")

    results = sender.send([listed, other])

    assert all(result.ok for result in results)
    recorded = ledger_by_span(sandbox)
    assert recorded[listed.span_id]["analytics_label"] == "parcel_update.out_for_delivery"
    assert recorded[other.span_id]["analytics_label"] == scheme.label("promotions", "sale")
    assert recorded[other.span_id]["analytics_label"].startswith("other-")
