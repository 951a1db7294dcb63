"""RecordCallbacks: provider reports become events on their delivery's span; junk is dead-lettered."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from herald.callbacks import DeliveryCallback
from herald.events import Status
from herald.events import dead_letter_event
from pipelines.callback_pipeline import RecordCallbacks
from herald.users import REGISTRY_ATTRIBUTE, Change, RegistryChanges
from pipelines.heartbeat import HEARTBEAT_ATTRIBUTE


def message(status: Status, provider: str = "twilio", span: str = "span-1") -> PubsubMessage:
    callback = DeliveryCallback(
        provider=provider, provider_message_id="SM1", notification_id="n-1", span_id=span,
        status=status, provider_code="30003" if status is Status.UNDELIVERED else None,
        occurred_at="2026-11-24T12:00:00.000000Z", callback_id=f"{span}-{status.value}")
    data, attributes = callback.to_pubsub()
    return PubsubMessage(data, attributes)


def test_callbacks_become_events_and_junk_is_dead_lettered() -> None:
    messages = [
        message(Status.DELIVERED),
        message(Status.DELIVERED),                 # the provider repeated itself
        message(Status.UNDELIVERED, span="span-2"),     # Twilio "failed" after Herald's "sent"
        message(Status.OPENED, provider="sendgrid", span="span-3"),
        PubsubMessage(b"not json", {}),
        PubsubMessage(b"{}", {HEARTBEAT_ATTRIBUTE: "1"}),
    ]
    with TestPipeline() as p:
        recorded = p | beam.Create(messages) | RecordCallbacks("notification-callbacks")
        events = recorded.events
        assert_that(recorded.dead_letters | beam.Map(
            lambda d: (d.source_topic, d.reason, d.data, d.span_id)),
            equal_to([("notification-callbacks", "invalid_message", b"not json", None)]),
            label="junk is parked for replay to its topic")
        assert_that(events | beam.Map(lambda e: (e["span_id"], e["status"], e["channel"],
                                                 e["provider_code"])),
                    equal_to([("span-1", "delivered", "sms", None),
                              ("span-1", "delivered", "sms", None),
                              ("span-2", "undelivered", "sms", "30003"),
                              ("span-3", "opened", "email", None),
                              (dead_letter_event(b"not json", "r", "d")["span_id"], "dead_letter", None, None)]))
        assert_that(events | "Ids" >> beam.Map(lambda e: e["event_id"])
                    | beam.combiners.Count.PerElement() | beam.Filter(lambda kv: kv[1] > 1)
                    | beam.Map(lambda kv: kv[1]), equal_to([2]), label="repeat shares its id")


def test_registry_changes_become_one_event_per_change() -> None:
    changes = RegistryChanges("trace-1", "crm", "2026-11-24T12:00:00.000000Z", (
        Change(Status.PREFERENCE_CHANGED, "u-1", "categories.marketing", False),
        Change(Status.PREFERENCE_CHANGED, "u-1", "devices.d1.notification_enabled", True, "d1"),
        Change(Status.REGISTRY_CHANGED, "u-1", "user", None)))
    broken = PubsubMessage(b'{"traceId": "t"}', {REGISTRY_ATTRIBUTE: "true"})
    with TestPipeline() as p:
        recorded = (p | beam.Create([PubsubMessage(*changes.to_pubsub()), broken])
                    | RecordCallbacks("notification-callbacks"))
        assert_that(recorded.events | beam.Filter(lambda e: e["status"] != "dead_letter")
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
        assert_that(recorded.dead_letters | beam.Map(lambda d: d.data),
                    equal_to([b'{"traceId": "t"}']), label="a broken record is parked")
