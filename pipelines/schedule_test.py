"""Scheduled sends through ResolveRecipients under TestStream, on the Firestore emulator: a request
whose sendTime is ahead is held in the outbox (a `scheduled` event with its sendTime, nothing
planned), its `due` release is planned like any request, a `canceled` release records `canceled`,
and a second scheduled request with the same notificationId is a duplicate."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to

from herald.clients import firestore_client, state_client
from herald.contracts import Release, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.settings import Settings
from ingest_function.outbox import COLLECTION, schedule_id
from pipelines.directory import Directory
from pipelines.recipients import EVENTS, ResolveRecipients
from pipelines.resources import ProcessResource


def test_a_request_is_held_until_its_send_time_then_planned_or_canceled(firestore_emulator) -> None:
    settings = Settings(project=f"schedule-{uuid.uuid4().hex[:8]}")
    firestore_client(settings).collection("users").document("u-1").set(
        {"notification_enabled": True, "email": "a@example.com"})
    send_at = datetime.now(timezone.utc) + timedelta(hours=2)
    body = {**DESIGN_BODY, "notificationType": "email", "metadata": {"sendTime": send_at.isoformat()}}
    scheduled = new_envelope(parse_request(body), "svc")
    reused = new_envelope(parse_request(body), "svc")  # same sender, same notificationId
    other = new_envelope(parse_request({**body, "notificationId": "n-2"}), "svc")
    due = dataclasses.replace(scheduled, release=Release.DUE)
    canceled = dataclasses.replace(other, release=Release.CANCELED)
    stream = (BeamTestStream().add_elements([scheduled]).add_elements([reused])
              .add_elements([due, canceled]).advance_watermark_to_infinity())
    with BeamTestPipeline(options=beam.options.pipeline_options.PipelineOptions(
            streaming=True)) as p:
        resolved = (p | stream | ResolveRecipients(
            settings, ProcessResource(partial(Directory, settings)), lambda d: d.dedupe_key))
        assert_that(resolved[EVENTS] | beam.Map(lambda e: (
                        e["trace_id"], e["status"], e["reason"], e["not_before"],
                        e["parent_span_id"] is None)),
                    equal_to([
                        (scheduled.trace_id, "scheduled", None,
                         send_at.isoformat().replace("+00:00", "Z"), True),
                        (reused.trace_id, "duplicate", "duplicate_notification", None, True),
                        (scheduled.trace_id, "resolved", None, None, True),
                        (other.trace_id, "canceled", None, None, True)]), label="events")
        assert_that(resolved.deliveries | beam.Map(lambda kv: (kv[1].envelope.trace_id,
                                                               kv[1].address)),
                    equal_to([(scheduled.trace_id, "a@example.com")]), label="planned")
    entry = state_client(settings).collection(COLLECTION).document(
        schedule_id("svc", scheduled.request.notification_id)).get().to_dict()
    assert (entry["state"], entry["not_before"], entry["attributes"]["release"]) == (
        "pending", send_at, "due")
