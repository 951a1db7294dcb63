"""Quiet hours and frequency caps through ResolveRecipients under TestStream, on the Firestore
emulator: a normal request inside the user's quiet hours is deferred to the window's end (a
`deferred` event and an outbox entry scoped to the delivery), a high one is planned, the copy the
outbox releases at the end is planned; over a category's cap a delivery is planned to be
suppressed `frequency_capped`, high priority never is."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to

from herald.clients import firestore_client, state_client
from herald.contracts import QUIET_REPLAY_PREFIX, Scope, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.settings import Settings
from ingest_function.outbox import COLLECTION
from pipelines.directory import Directory
from pipelines.recipients import EVENTS, ResolveRecipients
from pipelines.resources import ProcessResource


def _minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


def test_quiet_hours_defer_routine_and_caps_suppress_over_the_limit(firestore_emulator) -> None:
    settings = Settings(project=f"pacing-{uuid.uuid4().hex[:8]}", frequency_caps={"marketing": 1})
    now = datetime.now(timezone.utc)
    end = _minute(now + timedelta(hours=1))
    users = firestore_client(settings).collection("users")
    users.document("sleeper").set({"email": "s@example.com", "timezone": "UTC", "quiet_hours": {
        "start": _minute(now - timedelta(hours=1)).strftime("%H:%M"), "end": end.strftime("%H:%M")}})
    users.document("reader").set({"email": "r@example.com", "timezone": "Europe/Berlin"})

    def request(user: str, **changes):
        return new_envelope(parse_request({**DESIGN_BODY, "userId": user, "metadata": {},
                                           "notificationType": "email", **changes}), "svc")

    routine, urgent = request("sleeper"), request("sleeper", priority="high")
    first, second = request("reader", categoryType="marketing"), request("reader",
                                                                        categoryType="marketing")
    alert = request("reader", categoryType="marketing", priority="high")
    stream = (BeamTestStream().add_elements([routine, urgent]).add_elements([first])
              .add_elements([second, alert]).add_elements([first])  # a redelivery of `first`
              .advance_watermark_to_infinity())
    with BeamTestPipeline(options=PipelineOptions(streaming=True)) as p:
        resolved = (p | stream | ResolveRecipients(
            settings, ProcessResource(partial(Directory, settings)), lambda d: d.dedupe_key))
        assert_that(resolved[EVENTS] | beam.Filter(lambda e: e["status"] != "resolved")
                    | beam.Map(lambda e: (e["trace_id"], e["status"], e["reason"], e["not_before"])),
                    equal_to([(routine.trace_id, "deferred", "quiet_hours",
                               end.isoformat().replace("+00:00", "Z"))]), label="events")
        assert_that(resolved.deliveries | beam.Map(lambda kv: (
                        kv[1].envelope.trace_id, kv[1].skip and kv[1].skip.value)),
                    equal_to([(urgent.trace_id, None), (first.trace_id, None),
                              (second.trace_id, "frequency_capped"), (alert.trace_id, None),
                              (first.trace_id, None)]), label="planned")
    [entry] = [doc.to_dict() for doc in state_client(settings).collection(COLLECTION).stream()]
    assert (entry["not_before"], entry["attributes"]["trace_id"]) == (end, routine.trace_id)
    assert entry["attributes"]["replay_id"].startswith(QUIET_REPLAY_PREFIX)

    released = dataclasses.replace(routine, scope=Scope(only_span=entry["attributes"]["only_span"],
                                                        replay_id=entry["attributes"]["replay_id"]))
    with BeamTestPipeline(options=PipelineOptions(streaming=True)) as p:
        resolved = (p | BeamTestStream().add_elements([released]).advance_watermark_to_infinity()
                    | ResolveRecipients(settings, ProcessResource(partial(Directory, settings)),
                                        lambda d: d.dedupe_key))
        assert_that(resolved.deliveries | beam.Map(lambda kv: kv[1].envelope.trace_id),
                    equal_to([routine.trace_id]), label="released")
