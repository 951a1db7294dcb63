"""SendDeliveries: branch by channel and priority lane, batch, and call the providers' real SDKs.

Each (channel, lane) branch has its own batching so a burst of routine email never delays an
urgent push: the urgent lane flushes after 50 ms, the routine lane batches longer for throughput.
Within a batch the sender calls the provider concurrently (providers answer in ~100 ms each),
on AsyncWrapper's threads so provider latency does not hold up the runner.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.async_dofn import AsyncWrapper

from herald.clients import state_client
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Priority, Scope
from herald.dead_letters import DeadLetter
from herald.events import Reason, Status
from herald.providers.base import ErrorClass, Sender, SendResult
from herald.providers.fcm.sender import FcmSender
from herald.providers.retry import Outcome, RetryPolicy, send_with_retries
from herald.providers.sendgrid.sender import SendGridSender
from herald.providers.twilio.sender import TwilioSender
from herald.settings import Settings
from herald.templates import TemplateError, TemplateStore
from pipelines.claims import Claim, SendClaims, Verdict
from pipelines.delivery import Delivery
from pipelines.directory import Directory
from ingest_function.outbox import Outbox
from pipelines.resources import ProcessResource
from pipelines.schedule import outbox_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lane:
    """A priority class with its own batching: how long a delivery may wait to fill a batch.

    Batches matter because a provider call blocks for its latency (~100 ms) whatever the batch
    size: the DirectRunner runs every step on one thread, so many small calls would serialize.
    """

    name: str
    priorities: frozenset[Priority]
    batch_size: int
    max_wait_s: float


LANES = (
    Lane("urgent", frozenset({Priority.HIGH}), batch_size=100, max_wait_s=0.05),
    # Up to SendGrid's 1,000 personalizations, so a bulk email is one request per 1,000.
    Lane("routine", frozenset({Priority.NORMAL, Priority.LOW}), batch_size=1000, max_wait_s=0.25),
)


DEAD_LETTERS = "dead_letters"

SEND_PARALLELISM = 16
"""Provider batches in flight at once per branch and worker."""
COMMIT_POLL_S = 0.05
"""How often finished sends are collected; bounds the latency AsyncWrapper adds."""


def _batch_id(batch: Iterable[Delivery]) -> tuple[str, ...]:
    """AsyncWrapper tracks in-flight elements by a hashable id of their value; a batch is its spans."""
    return tuple(delivery.span_id for delivery in batch)


def lane_of(priority: Priority) -> Lane:
    return next(lane for lane in LANES if priority in lane.priorities)


def branch_name(channel: Channel, lane: Lane) -> str:
    return f"{channel.value}_{lane.name}"


def build_sender(channel: Channel, settings: Settings) -> Sender:
    """The SDK-backed sender of a channel, pointed at the configured endpoint."""
    max_per_s = settings.provider_max_per_s.get(PROVIDER_BY_CHANNEL[channel])
    if channel is Channel.PUSH:
        return FcmSender(settings.project, settings.fcm_endpoint, max_per_s=max_per_s,
                         labels=settings.fcm_analytics_labels, receipts=settings.receipts)
    if channel is Channel.SMS:
        return TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token,
                            settings.twilio_from_number, settings.twilio_endpoint,
                            settings.callback_base_url, max_per_s=max_per_s)
    return SendGridSender(settings.sendgrid_api_key, settings.sendgrid_from_email,
                          settings.sendgrid_endpoint, max_per_s=max_per_s)


BRANCHES = tuple((channel, lane) for channel in Channel for lane in LANES)
BRANCH_NAMES = tuple(branch_name(channel, lane) for channel, lane in BRANCHES)


class Router:
    """Which send branch a delivery takes, and its batching shard (its GroupIntoBatches key): by
    notification, so a bulk request's deliveries batch together (one SendGrid call per 1,000).

    A callable rather than a step of its own: the step before it (dedupe) emits one bundle per
    key, and on the DirectRunner every bundle of every step costs a few milliseconds of setup,
    so routing inside dedupe saves a task per delivery (measured in the issue's note).
    """

    def __init__(self, shards: int) -> None:
        self._shards = shards

    def __call__(self, delivery: Delivery) -> TaggedOutput:
        lane = lane_of(delivery.envelope.request.priority)
        shard = zlib.crc32(delivery.envelope.request.notification_id.encode()) % self._shards
        return TaggedOutput(branch_name(delivery.channel, lane), (shard, delivery))


class _SendBatch(beam.DoFn):
    """Provider calls for a batch (concurrent, retried on transient errors; each delivery claimed
    durably first); one terminal event per delivery: sent, failed (permanent, with the provider's
    code), duplicate (claimed by another request), dead_letter (retries exhausted, our
    configuration refused, or a restart found the send's outcome unknown) or, for a delivery
    planned as opted out, suppressed (unless its claim says an earlier run sent it). A delivery whose
    provider asked Herald to wait gets a `deferred` event instead, and its terminal event comes
    from its resend.

    What a failure does follows its provider's error table (herald/providers/<p>/errors.py):
    TOKEN_GONE disables the device, OPTED_OUT records the user's opt-out of the channel (later
    notifications are suppressed before any provider call), CONFIGURATION touches nothing and is
    parked loudly for an operator, RATE_LIMITED (or any wait the provider names) is deferred."""

    def __init__(self, sender: ProcessResource[Sender], directory: ProcessResource[Directory],
                 claims: ProcessResource[SendClaims], outbox: ProcessResource[Outbox],
                 policy: RetryPolicy, source_topic: str, source_topic_path: str,
                 default_wait_s: float, templates: ProcessResource[TemplateStore]) -> None:
        self._sender = sender
        self._directory = directory
        self._claims = claims
        self._outbox = outbox
        self._policy = policy
        self._source_topic = source_topic
        self._source_topic_path = source_topic_path
        self._default_wait_s = default_wait_s
        self._templates = templates

    def process(self, keyed_batch: tuple[int, Iterable[Delivery]]) -> Iterator[dict | DeadLetter]:
        batch = list(keyed_batch[1])
        unsent = [delivery for delivery in batch if delivery.skip is not None]
        if unsent:
            yield from self._settle_unsent(unsent)
        to_send: list[Delivery] = []
        rendered: list[Delivery] = []
        for delivery in batch:  # before any claim: a template error is not a send
            if delivery.skip is not None:
                continue
            try:
                rendered.append(delivery.render(self._templates.get()))
            except TemplateError as error:
                yield delivery.event(Status.FAILED, reason=Reason.TEMPLATE_ERROR.value,
                                     detail=str(error))
        if not rendered:
            return
        for delivery, claim in self._claim(rendered):
            if claim.verdict is Verdict.SEND:
                to_send.append(delivery)
            else:
                yield from self._follow(delivery, claim)
        claims = self._claims.get()

        def record_on_claims(settled: list[tuple[int, Outcome]]) -> None:
            claims.mark_all([(to_send[index].dedupe_key, mark) for index, outcome in settled
                             if (mark := _claim_mark(outcome)) is not None])

        outcomes = send_with_retries(self._sender.get(), [d.outgoing() for d in to_send],
                                     self._policy, on_settled=record_on_claims)
        for delivery, outcome in zip(to_send, outcomes, strict=True):
            yield from self._record(delivery, outcome)

    def _settle_unsent(self, unsent: list[Delivery]) -> Iterator[dict | DeadLetter]:
        """Opted-out deliveries: `suppressed`, unless their own claim says an earlier run sent
        them (pipelines/claims.py, `settle_unsent`); then their event is the one that run wrote,
        rendered the same way (its `locale`)."""
        settled = self._claims.get().settle_unsent(
            [(d.dedupe_key, d.envelope, d.span_id) for d in unsent])
        for delivery, claim in zip(unsent, settled, strict=True):
            if claim.verdict is Verdict.UNCLAIMED:
                yield delivery.event(Status.SUPPRESSED, reason=delivery.skip.value)
                continue
            try:
                delivery = delivery.render(self._templates.get())
            except TemplateError:
                pass  # the template changed since; the event goes without its locale
            yield from self._follow(delivery, claim)

    def _follow(self, delivery: Delivery, claim: Claim) -> Iterator[dict | DeadLetter]:
        """The terminal event of a delivery not sent now, as its claim says."""
        if claim.verdict is Verdict.DUPLICATE:
            yield delivery.event(Status.DUPLICATE, reason=Reason.DUPLICATE_NOTIFICATION.value)
        elif claim.verdict is Verdict.ALREADY_SENT:  # a restarted pipeline replaying it
            yield delivery.event(Status.SENT, provider_message_id=claim.provider_message_id)
        elif claim.verdict is Verdict.ALREADY_FAILED:
            yield delivery.event(Status.FAILED, reason=claim.reason or Reason.PROVIDER_ERROR.value,
                                 provider_code=claim.provider_code)
        else:
            yield from self._dead_letter(delivery, Reason.OUTCOME_UNKNOWN)

    def _claim(self, batch: list[Delivery]) -> list[tuple[Delivery, Claim]]:
        """Durable claims (pipelines/claims.py), in one BatchWrite for the whole batch."""
        return list(zip(batch, self._claims.get().claim_all(
            [(d.dedupe_key, d.envelope, d.span_id) for d in batch]), strict=True))

    def _record(self, delivery: Delivery, outcome: Outcome) -> Iterator[dict | DeadLetter]:
        result = outcome.result
        if result.ok:
            yield delivery.event(Status.SENT, provider_message_id=result.provider_message_id,
                                 attempts=outcome.attempts, event_ts=result.at)
            return
        error = {"provider_code": result.error_code, "attempts": outcome.attempts,
                 "detail": redact(result.error_message, delivery.address)}
        if result.error_class is ErrorClass.TOKEN_GONE and delivery.device_id:
            self._directory.get().disable_device(delivery.user_id,
                                                 delivery.device_id, result.error_code)
        if result.error_class is ErrorClass.OPTED_OUT:
            self._directory.get().record_opt_out(delivery.user_id, delivery.channel,
                                                 delivery.provider, result.error_code or "")
            yield delivery.event(Status.FAILED, reason=_failure_reason(result).value,
                                 event_ts=result.at, **error)
        elif result.error_class is ErrorClass.CONFIGURATION:
            logger.error("%s refused Herald's configuration (%s: %s); delivery %s parked for "
                         "replay, no device or user changed", delivery.provider,
                         result.error_code, error["detail"], delivery.span_id)
            yield from self._dead_letter(delivery, Reason.PROVIDER_CONFIGURATION,
                                         event_ts=result.at, **error)
        elif outcome.deferred:
            yield from self._defer(delivery, result.retry_after_s, event_ts=result.at, **error)
        elif outcome.exhausted:
            yield from self._dead_letter(delivery, Reason.RETRIES_EXHAUSTED, event_ts=result.at,
                                         **error)
        else:
            yield delivery.event(Status.FAILED, reason=Reason.PROVIDER_ERROR.value,
                                 event_ts=result.at, **error)

    def _defer(self, delivery: Delivery, wait_s: float | None, event_ts: str,
               **error: Any) -> Iterator[dict]:
        """Wait as long as the provider asked, durably and without a thread: the delivery goes
        into the Firestore outbox, scoped to its span under a new replay id, to be republished
        once `not_before` has passed (its claim stays `claimed`, which that replay id may take
        over once); its `deferred` event says until when."""
        not_before = datetime.now(timezone.utc) + timedelta(
            seconds=self._default_wait_s if wait_s is None else wait_s)
        envelope = replace(delivery.envelope, scope=Scope(
            only_span=delivery.span_id, replay_id=f"defer-{uuid.uuid4().hex[:12]}"))
        self._outbox.get().defer(envelope, self._source_topic_path, not_before,
                                 f"{error['provider_code']}: {error['detail']}")
        yield delivery.event(Status.DEFERRED, reason=Reason.PROVIDER_WAIT.value,
                             not_before=not_before.isoformat().replace("+00:00", "Z"),
                             event_ts=event_ts, **error)

    def _dead_letter(self, delivery: Delivery, reason: Reason, event_ts: str | None = None,
                     **error: Any) -> Iterator[dict | DeadLetter]:
        """Its `dead_letter` event, and the whole request for the dead-letter sink."""
        yield delivery.event(Status.DEAD_LETTER, reason=reason.value,
                             **({"event_ts": event_ts} if event_ts else {}), **error)
        yield DeadLetter.of_delivery(self._source_topic, delivery.envelope, delivery.span_id,
                                     reason.value, **error)


def _claim_mark(outcome: Outcome) -> dict[str, Any] | None:
    """What a send's outcome records on its claim: sent, or failed when the provider refused it
    outright. None when retries ran out: the last attempt may have timed out after the provider
    took it, so that claim stays `claimed` (a replay is then outcome_unknown); and None when it
    is deferred or parked for our configuration, so that its resend or replay may take it over."""
    if outcome.result.ok:
        return SendClaims.sent(outcome.result.provider_message_id)
    if outcome.exhausted or outcome.deferred or (
            outcome.result.error_class is ErrorClass.CONFIGURATION):
        return None
    return SendClaims.failed(outcome.result.error_code, _failure_reason(outcome.result).value)


def _failure_reason(result: SendResult) -> Reason:
    """The reason of a delivery its provider refused outright: the recipient opted out at the
    provider (Twilio 21610), or another provider error."""
    return (Reason.PROVIDER_OPTED_OUT if result.error_class is ErrorClass.OPTED_OUT
            else Reason.PROVIDER_ERROR)


def redact(message: str | None, address: str | None) -> str | None:
    """Provider messages quote the recipient ("The 'To' number +1555... is not valid"); events
    hold only its keyed hash, so the address is cut out of the message too."""
    if message is None or not address:
        return message
    return message.replace(address, "<recipient>")


def _count_and_split(item: dict | DeadLetter) -> Iterator[dict | TaggedOutput]:
    """`{channel}_{status}` counters, counted on the runner's thread: `_SendBatch` runs on
    AsyncWrapper's pool threads, which have no metrics container, so counters there are lost.
    AsyncWrapper has one output, so dead letters travel beside the events until here."""
    if isinstance(item, DeadLetter):
        yield TaggedOutput(DEAD_LETTERS, item)
        return
    Metrics.counter("herald", f"{item['channel']}_{item['status']}").inc()
    yield item


def _count_batch(keyed_batch: tuple[int, list[Delivery]], channel: str) -> tuple[int, list[Delivery]]:
    Metrics.distribution("herald", f"{channel}_batch_size").update(len(keyed_batch[1]))
    return keyed_batch


def _template_store(settings: Settings) -> TemplateStore:
    """Templates live in Herald's own database (herald.templates), read once a minute at most."""
    return TemplateStore(state_client(settings))


class SendDeliveries(beam.PTransform):
    """{branch name: keyed deliveries} (as `Router` tags them) -> (main) terminal events and
    (`dead_letters`) the DeadLetters of deliveries parked, through one batched branch per
    (channel, lane)."""

    def __init__(self, settings: Settings, directory: ProcessResource[Directory],
                 policy: RetryPolicy = RetryPolicy()) -> None:
        super().__init__()
        self._settings = settings
        self._directory = directory
        self._policy = policy

    def expand(self, routed):
        senders = {channel: ProcessResource(partial(build_sender, channel, self._settings))
                   for channel in Channel}  # one per channel, shared by its lanes
        claims = ProcessResource(partial(SendClaims, self._settings))
        outbox = ProcessResource(partial(outbox_for, self._settings))
        templates = ProcessResource(partial(_template_store, self._settings))
        results = []
        for channel, lane in BRANCHES:
            name = branch_name(channel, lane)
            results.append(
                routed[name]
                | f"Batch_{name}" >> beam.GroupIntoBatches(
                    lane.batch_size, max_buffering_duration_secs=lane.max_wait_s)
                | f"CountBatch_{name}" >> beam.Map(_count_batch, channel.value)
                | f"Send_{name}" >> beam.ParDo(AsyncWrapper(
                    _SendBatch(senders[channel], self._directory, claims, outbox, self._policy,
                               self._settings.requests_topic,
                               self._settings.topic_path(self._settings.requests_topic),
                               self._settings.provider_wait_s, templates),
                    parallelism=SEND_PARALLELISM,
                    callback_frequency=COMMIT_POLL_S, id_fn=_batch_id)))
        return (results | "MergeSendEvents" >> beam.Flatten()
                | "CountSendResults" >> beam.ParDo(_count_and_split).with_outputs(
                    DEAD_LETTERS, main="events"))
