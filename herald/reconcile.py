"""`herald reconcile`: prove from BigQuery that every accepted request finished, and resend what did not.

Pub/Sub keeps every published request on a second subscription (`Settings.audit_subscription`)
until this reconciler has seen the request finish: its `resolved` event says how many deliveries
it fanned out to, and each of those has a terminal event. A request that is old enough (`grace_s`)
and not finished was lost on its way through the pipeline, e.g. a worker died after Pub/Sub had
handed the message over (the DirectRunner acknowledges on read; Dataflow checkpoints first, so
there it is the exception). It is republished to the requests topic with the deliveries that did
finish in its scope's `skip_spans`, so only the missing ones run again; the copy is audited in
turn, by the next run. A request held for its sendTime (a `scheduled` event) is the outbox's to
publish: its audited message is settled, and the `due` release the outbox publishes once its
sendTime comes is audited like any request (so nothing is republished or parked before it is
due, however far ahead); so is a request whose unfinished deliveries were all deferred (their
outbox entries publish them). One that stays unfinished after `MAX_REPUBLISHES` is parked as a dead
letter (`unreconciled`) rather than resent forever.

An audience send is one message per page (pipelines/audiences.py), each page with its own request
span (herald.events.request_span) and `resolved` event, so each page's message is settled on its
own: finished once that page's deliveries ended, republished (read again from its cursor) if not.
A page's next message is published before its `resolved` event is emitted, so a page that
resolved has its successor on the topic, audited in turn; the send as a whole is finished
(`finished`) once `audience_complete` says how many pages there were and each has finished.

In production a scheduler runs it every few minutes with a grace well above the pipeline's
latency; the local stack's tests run it after the pipeline has drained, with no grace.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, NamedTuple

from google.api_core import exceptions
from google.cloud import bigquery, pubsub_v1

from herald.contracts import HEARTBEAT_ATTRIBUTE, ContractError, Envelope, Scope
from herald.dead_letters import DEAD_LETTERS_TABLE, DeadLetter
from herald.events import TERMINAL, Reason, Status, request_span
from herald.settings import Settings

DEFAULT_GRACE_S = 600.0
"""Far above the 10 s delivery bound: a request this old and unfinished was lost, not slow."""
PULL_BATCH = 500
PULL_TIMEOUT_S = 5.0
MAX_ACK_EXTENSION_S = 600
MAX_REPUBLISHES = 3
REPUBLISHES_ATTRIBUTE = "reconciled"
log = logging.getLogger("herald.reconcile")


@dataclass
class Report:
    """What one run found: requests finished (acknowledged), republished, parked, not yet due,
    held in the outbox (acknowledged)."""

    finished: int = 0
    republished: int = 0
    parked: int = 0
    waiting: int = 0
    held: int = 0
    """Scheduled requests, or requests whose unfinished deliveries are deferred: the outbox's."""
    republished_traces: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"finished {self.finished}, republished {self.republished}, "
                f"parked {self.parked}, not yet due {self.waiting}, "
                f"held in the outbox {self.held}")


@dataclass(frozen=True)
class _Audited:
    message: pubsub_v1.types.ReceivedMessage
    envelope: Envelope


class TraceProgress(NamedTuple):
    """How far a request (or one page of an audience send) got: deliveries planned (None before
    its `resolved` event), the spans that ended, and whether it was held for its sendTime (a
    `scheduled` event)."""

    planned: int | None
    ended: frozenset[str]
    scheduled: bool = False
    deferred: frozenset[str] = frozenset()
    """Spans Herald deferred (a `deferred` event with `not_before`: the provider's wait, the
    user's quiet hours): held in the outbox, which publishes them scoped to themselves."""
    page: int | None = None
    """An audience page's number (its `resolved` event's `page`)."""
    pages: int | None = None
    """On an audience send's last page: how many pages it had (`audience_complete`)."""

    @property
    def finished(self) -> bool:
        return self.planned is not None and len(self.ended) >= self.planned


RequestKey = tuple[str, str]
"""(trace id, request span): a request, or one page of an audience send (events.request_span)."""


def progress(client: bigquery.Client, settings: Settings,
             trace_ids: Iterable[str]) -> dict[RequestKey, TraceProgress]:
    """(trace, request span) -> its TraceProgress, for every request and audience page of the
    traces. A request that ended whole (a request-level terminal event: `dead_letter` when the
    pipeline parked it, `canceled` by its sender, `duplicate` of a scheduled notificationId) has
    nothing left to finish: 0 planned."""
    ends = ", ".join(f"'{status.value}'" for status in (*TERMINAL, Status.CANCELED))
    query = f"""
        SELECT trace_id, status, span_id, deliveries, parent_span_id, page
        FROM `{settings.events_table}`
        WHERE trace_id IN UNNEST(@trace_ids)
          AND (status IN ('{Status.RESOLVED.value}', '{Status.SCHEDULED.value}',
                          '{Status.AUDIENCE_COMPLETE.value}', {ends})
               OR (status = '{Status.DEFERRED.value}' AND not_before IS NOT NULL))
    """
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("trace_ids", "STRING", sorted(set(trace_ids)))])
    planned: dict[RequestKey, int] = {}
    ended: dict[RequestKey, set[str]] = {}
    parked: set[RequestKey] = set()
    scheduled: set[RequestKey] = set()
    deferred: dict[RequestKey, set[str]] = {}
    pages: dict[RequestKey, int] = {}
    page: dict[RequestKey, int] = {}
    for row in client.query(query, job_config=config).result():
        request_level = row["parent_span_id"] is None
        key = (row["trace_id"], row["span_id"] if request_level else row["parent_span_id"])
        if row["status"] == Status.RESOLVED.value:
            planned[key] = max(planned.get(key, 0), row["deliveries"] or 0)
            if row["page"] is not None:
                page[key] = row["page"]
        elif row["status"] == Status.AUDIENCE_COMPLETE.value:
            pages[key] = row["page"]
        elif row["status"] == Status.SCHEDULED.value:
            scheduled.add(key)
        elif row["status"] == Status.DEFERRED.value:
            deferred.setdefault(key, set()).add(row["span_id"])
        elif request_level:
            parked.add(key)
            if row["page"] is not None:
                page[key] = row["page"]
        else:
            ended.setdefault(key, set()).add(row["span_id"])
    planned.update(dict.fromkeys(parked, 0))
    return {key: TraceProgress(planned.get(key), frozenset(ended.get(key, ())), key in scheduled,
                               frozenset(deferred.get(key, ())), page.get(key), pages.get(key))
            for key in set(planned) | set(ended) | scheduled | set(deferred) | set(pages)}


def finished(client: bigquery.Client, settings: Settings, trace_ids: Iterable[str]) -> set[str]:
    """The traces whose every delivery has its terminal event: for an audience send, every page
    up to the number `audience_complete` gives has resolved, and every delivery of each ended."""
    by_trace: dict[str, list[TraceProgress]] = {}
    for (trace, _), state in progress(client, settings, trace_ids).items():
        by_trace.setdefault(trace, []).append(state)
    done = set()
    for trace, states in by_trace.items():
        if not all(state.finished or state.pages is not None for state in states):
            continue
        resolved_pages = {state.page for state in states if state.page is not None}
        if not resolved_pages and all(state.finished for state in states):
            done.add(trace)  # a request that names its users
            continue
        last = next((state.pages for state in states if state.pages is not None), None)
        if last is not None and resolved_pages >= set(range(1, last + 1)) and all(
                state.finished for state in states if state.page is not None):
            done.add(trace)
    return done


class Reconciler:
    """One pass over the audit subscription (see the module docstring)."""

    def __init__(self, settings: Settings, bq: bigquery.Client,
                 subscriber: pubsub_v1.SubscriberClient, publisher: pubsub_v1.PublisherClient,
                 grace_s: float) -> None:
        self._settings = settings
        self._bq = bq
        self._subscriber = subscriber
        self._publisher = publisher
        self._grace_s = grace_s
        self._subscription = settings.subscription_path(settings.audit_subscription)
        self._copies: set[str] = set()

    def run(self) -> Report:
        """Settle what the audit subscription held when the run started. What arrives during
        the run (its own republished copies, new requests, the edge's heartbeats) is the
        next run's: without that bound a run on a live topic would never end."""
        report, held = Report(), {}  # held: a later message's id -> its latest ack id
        started = datetime.now(timezone.utc)
        self._copies = set()
        try:
            while batch := self._pull():
                later = {r.message.message_id: r.ack_id for r in batch
                         if r.message.message_id in self._copies or r.message.publish_time >= started}
                held.update(later)
                if len(later) == len(batch):
                    break  # only what arrived during this run is left
                due = self._triage([r for r in batch if r.message.message_id not in later], report)
                if due:
                    self._settle(due, report)
        finally:
            if held:
                self._subscriber.modify_ack_deadline(
                    subscription=self._subscription, ack_ids=list(held.values()),
                    ack_deadline_seconds=min(MAX_ACK_EXTENSION_S, math.ceil(self._grace_s)))
        return report

    def _pull(self) -> list[pubsub_v1.types.ReceivedMessage]:
        try:
            response = self._subscriber.pull(
                subscription=self._subscription, max_messages=PULL_BATCH,
                timeout=PULL_TIMEOUT_S, retry=None)
        except exceptions.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def _triage(self, batch: list, report: Report) -> list[_Audited]:
        """Acknowledge what is not a request; hold back what is not due; return the rest."""
        now = datetime.now(timezone.utc)
        done, not_due, due = [], {}, []
        for received in batch:
            message = received.message
            attributes = dict(message.attributes)
            if HEARTBEAT_ATTRIBUTE in attributes or Scope.replay_id_of(attributes):
                done.append(received.ack_id)  # heartbeats; an operator's replay is its own record
                continue
            try:
                envelope = Envelope.from_pubsub(message.data, attributes)
            except (ContractError, ValueError, TypeError):
                done.append(received.ack_id)  # a poison message: the pipeline dead-letters it
                continue
            age_s = (now - message.publish_time).total_seconds()
            if age_s < self._grace_s:
                not_due[received.ack_id] = min(MAX_ACK_EXTENSION_S,
                                               math.ceil(self._grace_s - age_s) + 1)
                report.waiting += 1
                continue
            due.append(_Audited(received, envelope))
        if done:
            self._subscriber.acknowledge(subscription=self._subscription, ack_ids=done)
        by_deadline: dict[int, list[str]] = {}
        for ack_id, seconds in not_due.items():
            by_deadline.setdefault(seconds, []).append(ack_id)
        for seconds, ack_ids in by_deadline.items():  # back once due, not within this run
            self._subscriber.modify_ack_deadline(subscription=self._subscription,
                                                 ack_ids=ack_ids, ack_deadline_seconds=seconds)
        return due

    def _settle(self, due: list[_Audited], report: Report) -> None:
        states = progress(self._bq, self._settings, (a.envelope.trace_id for a in due))
        settled, parked_rows = [], []
        for audited in due:
            planned, ended, scheduled, deferred, *_ = states.get(
                (audited.envelope.trace_id, request_span(audited.envelope)),
                TraceProgress(None, frozenset()))
            if planned is not None and len(ended) >= planned:
                report.finished += 1
            elif scheduled and audited.envelope.release is None:
                report.held += 1  # held in the outbox; its release is audited in turn
            elif planned is not None and len(ended | deferred) >= planned:
                report.held += 1  # the rest is held in the outbox, deferred
            elif self._republishes(audited) >= MAX_REPUBLISHES:
                parked_rows.append(self._park(audited, planned, ended))
                report.parked += 1
            else:
                self._republish(audited, ended | deferred)  # deferred ones are the outbox's
                report.republished += 1
                report.republished_traces.append(audited.envelope.trace_id)
            settled.append(audited.message.ack_id)
        if parked_rows:
            errors = self._bq.insert_rows_json(
                self._settings.table(DEAD_LETTERS_TABLE), parked_rows,
                row_ids=[row["dead_letter_id"] for row in parked_rows])
            if errors:
                raise RuntimeError(f"BigQuery refused dead letters: {errors}")
        self._subscriber.acknowledge(subscription=self._subscription, ack_ids=settled)

    @staticmethod
    def _republishes(audited: _Audited) -> int:
        return int(audited.message.message.attributes.get(REPUBLISHES_ATTRIBUTE, "0"))

    def _republish(self, audited: _Audited, ended: frozenset[str]) -> None:
        """The same request, scoped to the deliveries that did not end (the skip list in the
        message data, see Scope), acked only once published."""
        message = audited.message.message
        data, scoped = replace(audited.envelope, scope=Scope(skip_spans=ended)).to_pubsub()
        unscoped = {k: v for k, v in message.attributes.items() if k not in Scope.ATTRIBUTES}
        attributes = {**unscoped, **scoped,
                      REPUBLISHES_ATTRIBUTE: str(self._republishes(audited) + 1)}
        self._copies.add(self._publisher.publish(
            self._settings.topic_path(self._settings.requests_topic), data,
            **attributes).result(timeout=30))
        log.info("republished trace %s (%d deliveries ended)", audited.envelope.trace_id, len(ended))

    def _park(self, audited: _Audited, planned: int | None, ended: frozenset[str]) -> dict:
        message = audited.message.message
        dead_letter = DeadLetter(
            self._settings.requests_topic, Reason.UNRECONCILED.value, message.data,
            {k: v for k, v in message.attributes.items() if k != REPUBLISHES_ATTRIBUTE},
            detail=f"{len(ended)} of {planned} deliveries ended after {MAX_REPUBLISHES} republishes")
        data, attributes = dead_letter.to_pubsub()
        self._publisher.publish(self._settings.topic_path(self._settings.dead_letter_topic),
                                data, **attributes).result(timeout=30)
        return dead_letter.to_row()
