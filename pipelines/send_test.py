"""Send-step helpers, and what each class of provider error does to a delivery (a scripted sender,
the real Firestore emulator); the send branches themselves are counted in herald_pipeline_test.py."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Sequence

import pytest

from herald.clients import firestore_client, state_client
from herald.contracts import Channel, Platform, Priority, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.dead_letters import DeadLetter
from herald.events import Reason
from herald.providers.base import ErrorClass, Outgoing, ProviderError, SendResult
from herald.providers.retry import RetryPolicy
from herald.settings import Settings
from ingest_function.outbox import COLLECTION as OUTBOX
from pipelines.claims import SendClaims
from pipelines.delivery import Delivery
from herald.users import PROVIDER_OPT_OUTS
from pipelines.directory import Directory
from pipelines.recipients import plan_deliveries
from pipelines.resources import ProcessResource
from pipelines.schedule import outbox_for
from pipelines.send import BRANCH_NAMES, _SendBatch, _template_store, lane_of, redact


def test_provider_messages_lose_the_recipient_address() -> None:
    message = "The 'To' number +15550000001 is not a valid phone number."
    assert redact(message, "+15550000001") == "The 'To' number <recipient> is not a valid phone number."
    assert redact(None, "+15550000001") is None and redact("x", None) == "x"


def test_only_high_priority_takes_the_urgent_lane() -> None:
    assert [lane_of(p).name for p in Priority] == ["urgent", "routine", "routine"]
    assert len(BRANCH_NAMES) == 6


# --- what each class of provider error does (scripted sender, real Firestore emulator) ---------

class OneAnswer:
    """A sender that answers every message with the same error (None: sent)."""

    provider = "scripted"

    def __init__(self, error: ProviderError | None) -> None:
        self.error, self.calls = error, 0

    def send(self, batch: Sequence[Outgoing]) -> list[SendResult]:
        self.calls += 1
        return [SendResult.sent(item, "id") if self.error is None
                else SendResult.failed(item, self.error) for item in batch]

    def close(self) -> None:
        pass


@pytest.fixture
def world(firestore_emulator: str):
    settings = Settings(project=f"send-{uuid.uuid4().hex[:8]}")
    users = firestore_client(settings)
    users.collection("users").document("u-1").set(
        {"notification_enabled": True, "phone": "+15550000001", "email": "a@example.com"})
    users.collection("users").document("u-1").collection("devices").document("d-1").set(
        {"platform": "ios", "token": "tok-1", "notification_enabled": True})
    return settings, users


def run(settings: Settings, channel: Channel, error: ProviderError | None,
        delivery: Delivery | None = None):
    """One delivery of a new request on `channel` (or `delivery`) through the send step, its
    provider answering `error` (None: accepted)."""
    envelope = new_envelope(parse_request({**DESIGN_BODY, "userId": "u-1",
                                           "notificationType": channel.value}), "svc")
    address = {Channel.PUSH: "tok-1", Channel.SMS: "+15550000001",
               Channel.EMAIL: "a@example.com"}[channel]
    delivery = delivery or Delivery(envelope, "u-1", channel, address, "hash-" + channel.value,
                                    Platform.IOS if channel is Channel.PUSH else None,
                                    "d-1" if channel is Channel.PUSH else None)
    sender = OneAnswer(error)
    step = _SendBatch(ProcessResource(lambda: sender),
                      ProcessResource(partial(Directory, settings)),
                      ProcessResource(partial(SendClaims, settings)),
                      ProcessResource(partial(outbox_for, settings)),
                      RetryPolicy(max_attempts=2, base_delay_s=0.01), settings.requests_topic,
                      settings.topic_path(settings.requests_topic), default_wait_s=60.0,
                      templates=ProcessResource(partial(_template_store, settings)))
    out = list(step.process((0, [delivery])))
    events = [item for item in out if isinstance(item, dict)]
    return delivery, events, [item for item in out if isinstance(item, DeadLetter)], sender


def device(users) -> dict:
    return users.collection("users").document("u-1").collection("devices").document("d-1").get().to_dict()


def test_a_twilio_opt_out_is_recorded_and_suppresses_the_next_sms(world) -> None:
    settings, users = world
    error = ProviderError("21610", "Attempt to send to unsubscribed recipient", ErrorClass.OPTED_OUT)
    delivery, [event], dead, _ = run(settings, Channel.SMS, error)
    assert (event["status"], event["reason"], event["provider_code"]) == (
        "failed", "provider_opted_out", "21610") and not dead
    user = users.collection("users").document("u-1").get().to_dict()
    assert user[PROVIDER_OPT_OUTS]["sms"]["source"] == "twilio"
    assert user[PROVIDER_OPT_OUTS]["sms"]["reason"] == "21610"
    # the next SMS to the user is planned as suppressed: no provider call
    following = new_envelope(parse_request({**DESIGN_BODY, "userId": "u-1",
                                            "notificationType": "sms"}), "svc")
    [(_, reason)] = plan_deliveries(following, "u-1", user, {}, b"k")
    assert reason is Reason.PROVIDER_OPTED_OUT
    # A replay of the failed SMS (its run died before the event was written) is planned opted out
    # now; its claim gives back the same failure, reason included, with no provider call.
    _, [again], _, sender = run(settings, Channel.SMS, None,
                                dataclasses.replace(delivery, skip=Reason.PROVIDER_OPTED_OUT))
    assert sender.calls == 0
    assert {key: again[key] for key in ("event_id", "status", "reason", "provider_code")} == {
        key: event[key] for key in ("event_id", "status", "reason", "provider_code")}


def test_sender_id_mismatch_disables_nothing_and_is_parked_for_an_operator(world, caplog) -> None:
    settings, users = world
    error = ProviderError("SENDER_ID_MISMATCH", "wrong sender", ErrorClass.CONFIGURATION)
    delivery, [event], [dead], sender = run(settings, Channel.PUSH, error)
    assert (event["status"], event["reason"]) == ("dead_letter", "provider_configuration")
    assert dead.reason == "provider_configuration" and dead.span_id == delivery.span_id
    assert device(users)["notification_enabled"] is True
    assert sender.calls == 1  # a configuration error is not retried
    assert "refused Herald's configuration" in caplog.text


def test_a_dead_token_disables_its_device(world) -> None:
    settings, users = world
    error = ProviderError("INVALID_ARGUMENT", "not a valid FCM registration token",
                          ErrorClass.TOKEN_GONE)
    _, [event], _, _ = run(settings, Channel.PUSH, error)
    assert (event["status"], event["reason"]) == ("failed", "provider_error")
    assert device(users)["notification_enabled"] is False
    assert device(users)["disabled_reason"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("wait_s", [60.0, None])
def test_a_provider_wait_defers_the_delivery_durably(world, wait_s) -> None:
    settings, _ = world
    error = ProviderError("QUOTA_EXCEEDED", "quota", ErrorClass.RATE_LIMITED, retry_after_s=wait_s)
    before = datetime.now(timezone.utc)
    delivery, [event], dead, sender = run(settings, Channel.PUSH, error)
    assert (event["status"], event["reason"], event["provider_code"]) == (
        "deferred", "provider_wait", "QUOTA_EXCEEDED") and not dead
    assert sender.calls == (1 if wait_s else 2)  # a named wait is not spent in the thread
    not_before = datetime.fromisoformat(event["not_before"].replace("Z", "+00:00"))
    assert 59 <= (not_before - before).total_seconds() <= 62  # asked for, or the setting's 60 s
    [entry] = [doc.to_dict() for doc in state_client(settings).collection(OUTBOX).stream()]
    assert entry["not_before"] == not_before and entry["state"] == "pending"
    assert entry["topic"] == settings.topic_path(settings.requests_topic)  # what replay publishes to
    assert entry["attributes"]["only_span"] == delivery.span_id
    assert entry["attributes"]["replay_id"].startswith("defer-")
