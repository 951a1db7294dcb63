"""DedupeDeliveries under TestStream: redeliveries vanish, and every other delivery (one whose
address another holds, one opted out) goes on to its send branch, where the durable claim
(pipelines/claims.py) decides it."""

from __future__ import annotations

import dataclasses
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
import pytest

from herald.contracts import Channel, Scope, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.events import Reason
from pipelines.dedupe import Bucketing, DedupeDeliveries
from pipelines.delivery import Delivery

BUCKETINGS = pytest.mark.parametrize("buckets", [0, 2], ids=["key per delivery", "shared buckets"])


def keyed(buckets: int):
    def delivery(envelope, address="a@example.com", skip=None):
        item = Delivery(envelope, "u-1", Channel.EMAIL, address, f"h-{address}", skip=skip)
        return Bucketing(buckets)(item), item
    return delivery


def email(notification_id: str = "n-1"):
    return new_envelope(parse_request({**DESIGN_BODY, "notificationType": "email",
                                       "notificationId": notification_id}), "svc")


def streaming() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def to_unique(item: Delivery) -> TaggedOutput:
    return TaggedOutput("unique", item)


@BUCKETINGS
def test_only_redeliveries_are_dropped_and_every_other_delivery_goes_on(buckets: int) -> None:
    first, retry, other, opted_out, delivery = (email(), email(), email("n-2"), email(),
                                                keyed(buckets))
    inputs = [
        delivery(first), delivery(first, "b@example.com"),  # two addresses: both unique
        delivery(retry),                                     # same id, another request: contested
        delivery(first),                                     # Pub/Sub redelivery: dropped silently
        delivery(other),                                     # another notification: unique
        delivery(opted_out, skip=Reason.USER_OPTED_OUT),    # same id, opted out: goes on too
    ]
    stream = TestStream().add_elements(inputs[:2]).advance_watermark_to(10) \
        .add_elements(inputs[2:]).advance_watermark_to_infinity()
    with TestPipeline(options=streaming()) as p:
        result = p | stream | DedupeDeliveries(ttl_s=3600, route=to_unique, branches=["unique"])
        assert_that(result.unique | "UniqueSpans" >> beam.Map(lambda d: (d.envelope.trace_id, d.address)),
                    equal_to([(first.trace_id, "a@example.com"), (first.trace_id, "b@example.com"),
                              (retry.trace_id, "a@example.com"), (other.trace_id, "a@example.com"),
                              (opted_out.trace_id, "a@example.com")]),
                    label="unique")


@BUCKETINGS
def test_a_claim_is_forgotten_after_its_ttl(buckets: int) -> None:
    """The sweep timer runs on the processing clock; TestStream's starts at the epoch, so it is
    moved past the wall clock plus the TTL."""
    first, later, delivery = email(), email(), keyed(buckets)
    stream = (TestStream().add_elements([delivery(first)])
              .advance_processing_time(int(time.time()) + 60)
              .add_elements([delivery(later)]).advance_watermark_to_infinity())
    with TestPipeline(options=streaming()) as p:
        result = p | stream | DedupeDeliveries(ttl_s=10, route=to_unique, branches=["unique"])
        assert_that(result.unique | beam.Map(lambda d: d.envelope.trace_id),
                    equal_to([first.trace_id, later.trace_id]), label="both sent")


def test_bulk_users_sharing_an_address_go_on_to_the_durable_claim_in_any_order() -> None:
    """Issue 9: one bulk request, two users with one email address (a family's). Both pass, in
    whichever order they come, for the durable claim to decide which one the provider gets (a
    restarted pipeline's empty state may meet them in the other order than the run that sent one);
    a redelivery of either is dropped, the second (contested) one's too, so its claim is not asked
    again while its send is in flight; an opted-out user sharing the address goes on once too (its
    claim may say an earlier run sent it before the opt-out)."""
    bulk = new_envelope(parse_request({**{k: v for k, v in DESIGN_BODY.items() if k != "userId"},
                                       "userIds": ["u-1", "u-2", "u-3"],
                                       "notificationType": "email"}), "svc")
    first, second = (Delivery(bulk, user, Channel.EMAIL, "home@example.com", "h-home")
                     for user in ("u-1", "u-2"))
    opted_out = Delivery(bulk, "u-3", Channel.EMAIL, "home@example.com", "h-home",
                         skip=Reason.USER_OPTED_OUT)
    assert first.span_id != second.span_id
    stream = TestStream().add_elements([(d.dedupe_key, d) for d in (
        second, first, second, first, opted_out, opted_out)]).advance_watermark_to_infinity()
    with TestPipeline(options=streaming()) as p:
        result = p | stream | DedupeDeliveries(ttl_s=3600, route=to_unique, branches=["unique"])
        assert_that(result.unique | "Users" >> beam.Map(lambda d: (d.user_id, d.skip)),
                    equal_to([("u-2", None), ("u-1", None), ("u-3", Reason.USER_OPTED_OUT)]),
                    label="each to the claim, once")


def test_two_senders_may_use_the_same_notification_id() -> None:
    """Issue 9: service A and service B each send their own `welcome-1` to the same user: ids are
    the sender's own, so both are sent."""
    body = {**DESIGN_BODY, "notificationType": "email", "notificationId": "welcome-1"}
    a, b = (Delivery(new_envelope(parse_request(body), sender), "u-1", Channel.EMAIL,
                     "a@example.com", "h-a") for sender in ("service-a", "service-b"))
    assert a.dedupe_key != b.dedupe_key
    stream = TestStream().add_elements([(a.dedupe_key, a), (b.dedupe_key, b)]) \
        .advance_watermark_to_infinity()
    with TestPipeline(options=streaming()) as p:
        result = p | stream | DedupeDeliveries(ttl_s=3600, route=to_unique, branches=["unique"])
        assert_that(result.unique | beam.Map(lambda d: d.envelope.sender_client),
                    equal_to(["service-a", "service-b"]), label="both sent")


@BUCKETINGS
def test_each_replay_passes_once_and_its_redeliveries_are_dropped(buckets: int) -> None:
    """`herald dlq replay` republishes a delivery under a replay id while its first attempt is
    remembered: the replay passes (to take its claim over), its own redelivery is dropped, and a
    second replay passes again; the first attempt's redelivery stays dropped."""
    first, delivery = email(), keyed(buckets)
    replays = [dataclasses.replace(first, scope=Scope(replay_id=f"r-{n}")) for n in (1, 2)]
    stream = TestStream().add_elements([
        delivery(first), delivery(replays[0]), delivery(replays[0]), delivery(first),
        delivery(replays[1]), delivery(replays[1]), delivery(replays[0])]) \
        .advance_watermark_to_infinity()
    with TestPipeline(options=streaming()) as p:
        result = p | stream | DedupeDeliveries(ttl_s=3600, route=to_unique, branches=["unique"])
        assert_that(result.unique | beam.Map(lambda d: d.envelope.claim_token),
                    equal_to([first.trace_id, f"{first.trace_id}#r-1", f"{first.trace_id}#r-2"]),
                    label="the first and each replay, once")
