"""RecordCallbacks: provider reports become events on their delivery's span, opt-outs become the
users' provider opt-outs in Firestore (the real emulator), junk is dead-lettered."""

from __future__ import annotations

import uuid
from functools import partial

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import firestore

from herald.callback_events import callback
from herald.contracts import Channel
from herald.events import Status, dead_letter_event, recipient_hash
from herald.settings import Settings
from herald.users import REGISTRY_ATTRIBUTE, Change, RegistryChanges, provider_opt_out
from pipelines.callback_pipeline import DEAD_LETTERS, EVENTS, RecordCallbacks
from pipelines.directory import Directory
from herald.contracts import HEARTBEAT_ATTRIBUTE
from pipelines.resources import ProcessResource

AT = "2026-11-24T12:00:00.000000Z"
KEY = b"test-hash-key"


def message(status: Status, provider: str = "twilio", span: str | None = "span-1",
            **fields) -> PubsubMessage:
    data, attributes = callback(provider, status, AT, (span, fields.get("address")),
                                provider_message_id="SM1", notification_id="n-1", span_id=span,
                                **fields).to_pubsub()
    return PubsubMessage(data, attributes)


@pytest.fixture
def settings(firestore_emulator: str) -> Settings:
    return Settings(project=f"callbacks-{uuid.uuid4().hex[:8]}", hash_key=KEY)


def run(settings: Settings, messages: list[PubsubMessage], check) -> None:
    with TestPipeline() as p:
        recorded = p | beam.Create(messages) | RecordCallbacks(
            "notification-callbacks", KEY, ProcessResource(partial(Directory, settings)))
        check(recorded[EVENTS], recorded[DEAD_LETTERS])


def test_callbacks_become_events_and_junk_is_dead_lettered(settings: Settings) -> None:
    messages = [
        message(Status.DELIVERED),
        message(Status.DELIVERED),                 # the provider repeated itself
        message(Status.UNDELIVERED, span="span-2", provider_code="30003"),
        message(Status.OPENED, provider="sendgrid", span="span-3", machine_open=True),
        PubsubMessage(b"not json", {}),
        PubsubMessage(b"{}", {HEARTBEAT_ATTRIBUTE: "1"}),
    ]

    def check(events, dead_letters):
        assert_that(dead_letters | beam.Map(
            lambda d: (d.source_topic, d.reason, d.data, d.span_id)),
            equal_to([("notification-callbacks", "invalid_message", b"not json", None)]),
            label="junk is parked for replay to its topic")
        assert_that(events | beam.Map(lambda e: (e["span_id"], e["status"], e["channel"],
                                                 e["provider_code"], e["machine_open"])),
                    equal_to([("span-1", "delivered", "sms", None, None),
                              ("span-1", "delivered", "sms", None, None),
                              ("span-2", "undelivered", "sms", "30003", None),
                              ("span-3", "opened", "email", None, True),
                              (dead_letter_event(b"not json", "r", "d")["span_id"],
                               "dead_letter", None, None, None)]))
        assert_that(events | "Ids" >> beam.Map(lambda e: e["event_id"])
                    | beam.combiners.Count.PerElement() | beam.Filter(lambda kv: kv[1] > 1)
                    | beam.Map(lambda kv: kv[1]), equal_to([2]), label="repeat shares its id")

    run(settings, messages, check)


def test_an_opt_out_reaches_every_user_with_the_address(settings: Settings) -> None:
    users = firestore.Client(project=settings.project).collection("users")
    users.document("u-1").set({"phone": "+15550000001", "email": "one@example.com"})
    users.document("u-2").set({"phone": "+15550000001", "email": "two@example.com"})
    users.document("u-3").set({"phone": "+15550000003", "email": "three@example.com"})
    messages = [
        message(Status.OPTED_OUT, span=None, reason="STOP", address="+15550000001"),
        message(Status.OPTED_OUT, provider="sendgrid", span="span-9", reason="unsubscribe",
                address="three@example.com"),
        message(Status.OPTED_OUT, provider="sendgrid", span="span-8", reason="spamreport",
                address="nobody@example.com"),
    ]

    def check(events, _):
        assert_that(events | beam.Map(lambda e: (e["status"], e["channel"], e["user_id"],
                                                 e["span_id"], e["reason"],
                                                 e["recipient_hash"])),
                    equal_to([
                        ("opted_out", "sms", "u-1", None, "STOP",
                         recipient_hash("+15550000001", KEY)),
                        ("opted_out", "sms", "u-2", None, "STOP",
                         recipient_hash("+15550000001", KEY)),
                        ("opted_out", "email", "u-3", "span-9", "unsubscribe",
                         recipient_hash("three@example.com", KEY)),
                        ("opted_out", "email", None, "span-8", "spamreport",
                         recipient_hash("nobody@example.com", KEY))]))

    run(settings, messages, check)

    documents = {doc.id: doc.to_dict() for doc in users.stream()}
    assert {user: {c.value: (provider_opt_out(doc, c) or {}).get("reason")
                   for c in (Channel.SMS, Channel.EMAIL)}
            for user, doc in documents.items()} == {
        "u-1": {"sms": "STOP", "email": None}, "u-2": {"sms": "STOP", "email": None},
        "u-3": {"sms": None, "email": "unsubscribe"}}
    assert provider_opt_out(documents["u-3"], Channel.EMAIL)["source"] == "sendgrid"


def test_an_opt_in_lifts_the_opt_out_its_provider_reported_before_it(settings: Settings) -> None:
    users = firestore.Client(project=settings.project).collection("users")
    opted = {"source": "twilio", "reason": "STOP", "at": "2026-11-24T11:00:00.000000Z"}
    users.document("u-1").set({"phone": "+15550000001",
                               "provider_opt_outs": {"sms": opted, "email": {
                                   "source": "sendgrid", "reason": "unsubscribe", "at": AT}}})
    users.document("u-2").set({"phone": "+15550000002", "provider_opt_outs": {"sms": {
        **opted, "at": "2026-11-24T13:00:00.000000Z"}}})          # a STOP after the START
    users.document("u-3").set({"phone": "+15550000003", "provider_opt_outs": {"sms": {
        **opted, "source": "operator"}}})                        # not Twilio's to lift
    messages = [message(Status.OPTED_IN, span=None, reason="START", address=phone)
                for phone in ("+15550000001", "+15550000002", "+15550000003")]

    def check(events, _):
        assert_that(events | beam.Map(lambda e: (e["status"], e["user_id"], e["reason"])),
                    equal_to([("opted_in", "u-1", "START"), ("opted_in", "u-2", "START"),
                              ("opted_in", "u-3", "START")]))

    run(settings, messages, check)

    documents = {doc.id: doc.to_dict() for doc in users.stream()}
    assert provider_opt_out(documents["u-1"], Channel.SMS) is None
    assert provider_opt_out(documents["u-1"], Channel.EMAIL)["reason"] == "unsubscribe"
    assert provider_opt_out(documents["u-2"], Channel.SMS)["reason"] == "STOP"
    assert provider_opt_out(documents["u-3"], Channel.SMS)["source"] == "operator"

def test_registry_changes_become_one_event_per_change() -> None:
    changes = RegistryChanges("trace-1", "crm", "2026-11-24T12:00:00.000000Z", (
        Change(Status.PREFERENCE_CHANGED, "u-1", "categories.marketing", False),
        Change(Status.PREFERENCE_CHANGED, "u-1", "devices.d1.notification_enabled", True, "d1"),
        Change(Status.REGISTRY_CHANGED, "u-1", "user", None)))
    broken = PubsubMessage(b'{"traceId": "t"}', {REGISTRY_ATTRIBUTE: "true"})
    with TestPipeline() as p:
        recorded = (p | beam.Create([PubsubMessage(*changes.to_pubsub()), broken])
                    | RecordCallbacks("notification-callbacks", KEY, ProcessResource(
                        partial(Directory, Settings(project="registry-changes")))))
        assert_that(recorded[EVENTS] | beam.Filter(lambda e: e["status"] != "dead_letter")
                    | beam.Map(lambda e: (e["status"], e["user_id"], e["sender_client"],
                                          e["setting"], e["value"], e["device_id"],
                                          e["event_ts"])),
                    equal_to([
                        ("preference_changed", "u-1", "crm", "categories.marketing", "false", None,
                         "2026-11-24T12:00:00.000000Z"),
                        ("preference_changed", "u-1", "crm", "devices.d1.notification_enabled",
                         "true", "d1", "2026-11-24T12:00:00.000000Z"),
                        ("registry_changed", "u-1", "crm", "user", None, None,
                         "2026-11-24T12:00:00.000000Z")]))
        assert_that(recorded[DEAD_LETTERS] | beam.Map(lambda d: d.data),
                    equal_to([b'{"traceId": "t"}']), label="a broken record is parked")
