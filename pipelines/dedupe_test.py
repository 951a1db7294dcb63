"""DedupeDeliveries under TestStream: first claim wins, duplicates are recorded, redeliveries vanish."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from herald.contracts import Channel, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from pipelines.dedupe import EVENTS, DedupeDeliveries
from pipelines.delivery import Delivery


def delivery(envelope, address="a@example.com"):
    item = Delivery(envelope, Channel.EMAIL, address, f"h-{address}")
    return item.dedupe_key, item


def to_unique(item: Delivery) -> TaggedOutput:
    return TaggedOutput("unique", item)


def test_first_claim_wins_and_every_element_is_accounted_for() -> None:
    first = new_envelope(parse_request({**DESIGN_BODY, "notificationType": "email"}), "svc")
    retry = new_envelope(parse_request({**DESIGN_BODY, "notificationType": "email"}), "svc")
    other = new_envelope(parse_request({**DESIGN_BODY, "notificationType": "email",
                                        "notificationId": "n-2"}), "svc")
    inputs = [
        delivery(first), delivery(first, "b@example.com"),  # two addresses: both unique
        delivery(retry),                                     # same id, another request: duplicate
        delivery(first),                                     # Pub/Sub redelivery: dropped silently
        delivery(other),                                     # another notification: unique
    ]
    stream = TestStream().add_elements(inputs[:2]).advance_watermark_to(10) \
        .add_elements(inputs[2:]).advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        result = p | stream | DedupeDeliveries(ttl_s=3600, route=to_unique, branches=["unique"])
        assert_that(result.unique | "UniqueSpans" >> beam.Map(lambda d: (d.envelope.trace_id, d.address)),
                    equal_to([(first.trace_id, "a@example.com"), (first.trace_id, "b@example.com"),
                              (other.trace_id, "a@example.com")]), label="unique")
        assert_that(result[EVENTS] | beam.Map(lambda e: (e["trace_id"], e["status"], e["reason"])),
                    equal_to([(retry.trace_id, "duplicate", "duplicate_notification")]),
                    label="duplicates")
