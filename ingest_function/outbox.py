"""The outbox: a request Pub/Sub did not take in time is kept in Firestore and published later,
so the edge can answer 202 while Pub/Sub is down and nothing it accepted is lost.

One entry per accepted request, `outbox/{traceId}`, one per delivery the pipeline deferred
because its provider asked it to wait, `outbox/{traceId}-{replayId}` (`Outbox.defer`), and one per
scheduled request (a `metadata.sendTime` ahead) held until then, `outbox/scheduled-{hash}`, keyed
by sender and notificationId so the sender's DELETE finds it (`Outbox.hold`, `Outbox.cancel`):

    state         "pending" | "published"
    topic         the full topic path the message is for
    data          bytes: the exact message data that failed to publish
    attributes    {str: str}: its attributes
    accepted_at   timestamp: when the edge accepted the request (replay order)
    created_at    timestamp
    attempts      int: publish attempts so far, the edge's included
    last_error    str: why the last attempt failed
    leased_until  timestamp | null: a replayer's hold on the entry
    published_at  timestamp (once published)
    expires_at    timestamp, set only once published: a Firestore TTL policy deletes published
                  entries a week later; a pending entry has none, so it is never deleted
    not_before    timestamp (deferred deliveries, scheduled requests): not published before then

A scheduled request's entry holds its message with the attribute `release=due`, so the pipeline
plans it when it comes back instead of holding it again; a cancel rewrites that to
`release=canceled` and makes the entry due at once, so the pipeline records `canceled` from it.

A replayer (the `replay_outbox` function that Cloud Scheduler calls, the local stack's scheduler,
or `herald outbox replay`) reads pending entries oldest first, leases each with a write conditional
on the entry's update time (two replayers cannot both lease one), publishes, then marks them
published.

Delivery into Pub/Sub is at-least-once, not exactly-once: a replayer that dies between publishing
and marking leaves a lease that runs out, and the next replayer publishes the entry again; a publish
the edge gave up on may still land just after it wrote the entry. That is safe because it is the
same message (same trace id), and the pipeline's dedupe drops a trace it has already claimed as a
redelivery. The replay query needs the composite index (state, accepted_at) in production.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import partial
from typing import Any, Mapping

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.cloud import firestore, pubsub_v1
from google.cloud.firestore_v1.base_query import FieldFilter

from herald.contracts import RELEASE_ATTRIBUTE, Envelope, Release

COLLECTION = "outbox"
KEEP_PUBLISHED = timedelta(days=7)
DEFAULT_REPLAY_LIMIT = 10_000
"""Entries one replay run publishes at most: a few minutes of peak traffic, well inside a
function's timeout."""
PAGE_SIZE = 200
"""Entries read and marked per round trip (a Firestore batch takes at most 500 writes)."""
LEASE_WORKERS = 16
"""Leases are one conditional write per entry; writing them in parallel keeps a page to about
one Firestore round trip."""
LEASE_MARGIN = timedelta(seconds=60)
"""A replayer's lease is its publish timeout plus this: one that has not marked its entries by
then is presumed dead and its entries are replayed again."""
PUBLISH_BATCH = pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.001)
"""The edge's publisher batching: a short window, since a sender waits on each publish, so latency
matters more than batching."""
TOPIC_PATH = re.compile(r"projects/[^/]+/topics/[^/]+")
PUBLISH_ERRORS = (exceptions.GoogleAPIError, TimeoutError)
"""What a refused or timed-out publish raises from `Future.result`."""

log = logging.getLogger("herald.ingest.outbox")


class State(StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    REFUSED = "refused"
    """Pub/Sub refused the entry's message as invalid (INVALID_ARGUMENT): a retry cannot help,
    so the entry is set aside, with the error in `last_error`, and the replay goes on."""


class Cancel(StrEnum):
    """What `Outbox.cancel` found: the scheduled request is canceled (now or before), was already
    released to be sent, or there is no scheduled request of that sender with that id."""

    CANCELED = "canceled"
    ALREADY_SENT = "already_sent"
    UNKNOWN = "unknown"


def schedule_id(sender_client: str, notification_id: str) -> str:
    """The outbox document id of a sender's scheduled request: ids belong to their sender, so
    another sender's DELETE of the same notificationId finds nothing."""
    digest = hashlib.sha256(json.dumps([sender_client, notification_id]).encode()).hexdigest()
    return f"scheduled-{digest[:40]}"


@dataclass(frozen=True)
class Message:
    """A Pub/Sub message and the topic it is for."""

    topic: str
    data: bytes
    attributes: Mapping[str, str]

    @classmethod
    def of(cls, envelope: Envelope, topic: str) -> Message:
        data, attributes = envelope.to_pubsub()
        return cls(topic, data, attributes)


def _due_later(envelope: Envelope, topic: str, not_before: datetime, why: str) -> dict[str, Any]:
    """A pending entry the pipeline wrote, for the replay to publish once `not_before` passed."""
    return _pending(envelope, topic, attempts=0, last_error=why[:500], not_before=not_before)


def publish(publisher: pubsub_v1.PublisherClient, message: Message, timeout_s: float) -> Future:
    """Start publishing `message`. The client's own retries also end after `timeout_s` (by default
    they go on for minutes), so a message the caller stopped waiting for and stored in the outbox
    is not also published behind its back much later."""
    return publisher.publish(message.topic, message.data,
                             retry=Retry(initial=0.05, maximum=1.0, timeout=timeout_s),
                             timeout=timeout_s, **message.attributes)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay run did; `error` says why it stopped early (Pub/Sub still refusing);
    `refused`, how many entries Pub/Sub refused as invalid (set aside, State.REFUSED)."""

    published: int
    error: str | None = None
    refused: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"published": self.published, "error": self.error, "refused": self.refused}

    def summary(self) -> str:
        """One line for a log or a terminal: what was republished and what was set aside."""
        refused = f", {self.refused} refused as invalid and set aside" if self.refused else ""
        return f"republished {self.published} outbox entries{refused}"


@dataclass(frozen=True)
class _Lease:
    ref: firestore.DocumentReference
    message: Message
    version: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def _pending(envelope: Envelope, topic: str, **fields: Any) -> dict[str, Any]:
    """A new pending entry for `envelope`'s message (the layout is in the module docstring).
    Raises ValueError unless `topic` is a full topic path (what the replay publishes to)."""
    if not TOPIC_PATH.fullmatch(topic):
        raise ValueError(f"an outbox entry needs a full topic path, not {topic!r}")
    message = Message.of(envelope, topic)
    return {"state": State.PENDING.value, "topic": topic, "data": message.data,
            "attributes": dict(message.attributes),
            "accepted_at": datetime.fromisoformat(envelope.accepted_at),
            "created_at": firestore.SERVER_TIMESTAMP, "leased_until": None, **fields}


class Outbox:
    """The `outbox` collection. `call` (retry, timeout) bounds each Firestore call; empty means
    the client's defaults."""

    def __init__(self, db: firestore.Client, call: Mapping[str, Any] | None = None) -> None:
        self._db = db
        self._call = call or {}
        self._entries = db.collection(COLLECTION)

    def add(self, envelope: Envelope, topic: str, error: BaseException,
            batch: firestore.WriteBatch | None = None) -> None:
        """Store a request whose publish failed with `error`. `batch` may already hold writes
        that must commit with the entry (an idempotency record's acceptance): all or nothing.
        Raises GoogleAPIError when Firestore does not take it."""
        batch = self._db.batch() if batch is None else batch
        batch.create(self._entries.document(envelope.trace_id),
                     _pending(envelope, topic, attempts=1, last_error=_describe(error)))
        batch.commit(**self._call)

    def defer(self, envelope: Envelope, topic: str, not_before: datetime, why: str) -> None:
        """Store one delivery to publish again at `not_before` (its envelope scoped to it under a
        replay id, see herald.contracts.Scope): the pipeline's durable wait for a provider that
        asked it to wait, published by the same replay as the edge's entries. Raises
        GoogleAPIError when Firestore does not take it."""
        self._entries.document(f"{envelope.trace_id}-{envelope.scope.replay_id}").create(
            _due_later(envelope, topic, not_before, why), **self._call)

    def hold(self, envelope: Envelope, topic: str, not_before: datetime) -> str:
        """Store a scheduled request until `not_before` (its sendTime), to be published then as
        its `due` release, unless the sender's notificationId is held already. Returns the
        trace id that holds it: this request's (now, or by an earlier delivery of it), or an
        earlier request's with the same notificationId. Raises GoogleAPIError when Firestore
        does not take it."""
        ref = self._entries.document(schedule_id(envelope.sender_client,
                                                 envelope.request.notification_id))
        try:
            ref.create(_due_later(replace(envelope, release=Release.DUE), topic, not_before,
                                  "scheduled"), **self._call)
        except exceptions.AlreadyExists:
            return ref.get(**self._call).get("attributes")["trace_id"]
        return envelope.trace_id

    def cancel(self, sender_client: str, notification_id: str) -> Cancel:
        """Cancel the sender's scheduled request `notification_id` if it is still held: its
        entry becomes due at once as a `canceled` release (the pipeline records the `canceled`
        event from it). Conditional on the entry's update time, as a replayer's lease is, so a
        cancel and a release cannot both win. Raises GoogleAPIError when Firestore fails."""
        ref = self._entries.document(schedule_id(sender_client, notification_id))
        while True:
            snapshot = ref.get(**self._call)
            if not snapshot.exists:
                return Cancel.UNKNOWN
            entry, now = snapshot.to_dict(), _now()
            if entry["attributes"].get(RELEASE_ATTRIBUTE) == Release.CANCELED.value:
                return Cancel.CANCELED
            if entry["state"] != State.PENDING.value or (
                    entry["leased_until"] is not None and entry["leased_until"] > now):
                return Cancel.ALREADY_SENT  # published, or a replayer is publishing it
            try:
                ref.update({"attributes": {**entry["attributes"],
                                           RELEASE_ATTRIBUTE: Release.CANCELED.value},
                            "not_before": now, "last_error": "canceled by its sender"},
                           option=self._db.write_option(last_update_time=snapshot.update_time),
                           **self._call)
            except exceptions.FailedPrecondition:
                continue  # a replayer leased it meanwhile: look again
            return Cancel.CANCELED

    def replay_for(self, publisher: pubsub_v1.PublisherClient, publish_timeout_s: float,
                   window_s: float, every_s: float,
                   limit: int = DEFAULT_REPLAY_LIMIT) -> ReplayReport:
        """`replay` now and every `every_s` until `window_s` has passed (one run if 0), stopping
        at the first run Pub/Sub refuses. Cloud Scheduler calls the replay at most once a
        minute; polling through most of that minute publishes a scheduled request within
        `every_s` of its sendTime, not up to a minute late."""
        deadline, published, refused = time.monotonic() + window_s, 0, 0
        while True:
            report = self.replay(publisher, publish_timeout_s, limit)
            published, refused = published + report.published, refused + report.refused
            if report.error is not None or time.monotonic() + every_s > deadline:
                return ReplayReport(published, report.error, refused)
            time.sleep(every_s)

    def replay(self, publisher: pubsub_v1.PublisherClient, publish_timeout_s: float,
               limit: int = DEFAULT_REPLAY_LIMIT) -> ReplayReport:
        """Republish up to `limit` pending entries, oldest accepted first, and mark them
        published. Stops after the first page Pub/Sub refuses: it is still down, the rest would
        fail too, and the refused entries stay pending for the next run. An entry whose message
        Pub/Sub refuses as invalid is set aside instead (State.REFUSED, logged), so it cannot
        hold back the entries after it, run after run."""
        lease_for = timedelta(seconds=publish_timeout_s) + LEASE_MARGIN
        published, refused, after = 0, 0, None
        with ThreadPoolExecutor(LEASE_WORKERS) as pool:
            while published < limit:
                page = self._pending(after, min(PAGE_SIZE, limit - published))
                if not page:
                    break
                after = page[-1]
                leased = pool.map(partial(self._lease, duration=lease_for), page)
                leases = [lease for lease in leased if lease is not None]
                sent = [(lease, publish(publisher, lease.message, publish_timeout_s))
                        for lease in leases]
                done, error = [], None
                for lease, future in sent:
                    try:
                        future.result(timeout=publish_timeout_s)
                        done.append(lease)
                    except exceptions.InvalidArgument as invalid:
                        refused += self._refuse(lease, invalid)
                    except PUBLISH_ERRORS as failure:
                        error = failure
                        self._release(lease, failure)
                self._mark_published(done)
                published += len(done)
                if error is not None:
                    return ReplayReport(published, _describe(error), refused)
        return ReplayReport(published, refused=refused)

    def _refuse(self, lease: _Lease, invalid: exceptions.InvalidArgument) -> int:
        """Set an entry Pub/Sub refused as invalid aside (State.REFUSED, kept like a published
        one), loudly; 1 once done, 0 if Firestore did not take it (the next run tries again)."""
        log.error("outbox entry %s set aside: Pub/Sub refused its message for %s: %s",
                  lease.ref.id, lease.message.topic, invalid)
        try:
            lease.ref.update({"state": State.REFUSED.value, "leased_until": None,
                              "last_error": _describe(invalid),
                              "expires_at": _now() + KEEP_PUBLISHED}, **self._call)
        except exceptions.GoogleAPIError as failure:
            log.warning("could not set outbox entry %s aside: %s", lease.ref.id, failure)
            return 0
        return 1

    def _pending(self, after: firestore.DocumentSnapshot | None,
                 size: int) -> list[firestore.DocumentSnapshot]:
        query = (self._entries.where(filter=FieldFilter("state", "==", State.PENDING.value))
                 .order_by("accepted_at").limit(size))
        if after is not None:
            query = query.start_after(after)
        return list(query.stream(**self._call))

    def _lease(self, snapshot: firestore.DocumentSnapshot, duration: timedelta) -> _Lease | None:
        """Hold the entry for this replayer; None if another replayer holds or just took it, or it
        is not due yet (`not_before`)."""
        entry = snapshot.to_dict()
        now = _now()
        if entry["leased_until"] is not None and entry["leased_until"] > now:
            return None
        if entry.get("not_before") is not None and entry["not_before"] > now:
            return None
        try:
            written = snapshot.reference.update(
                {"leased_until": now + duration, "attempts": firestore.Increment(1)},
                option=self._db.write_option(last_update_time=snapshot.update_time), **self._call)
        except exceptions.FailedPrecondition:
            return None
        return _Lease(snapshot.reference,
                      Message(entry["topic"], entry["data"], entry["attributes"]),
                      written.update_time)

    def _release(self, lease: _Lease, error: BaseException) -> None:
        """Record why the publish failed and drop the lease, so the next run retries at once.
        Best effort: an unreleased lease simply runs out."""
        try:
            lease.ref.update({"leased_until": None, "last_error": _describe(error)},
                             option=self._db.write_option(last_update_time=lease.version),
                             **self._call)
        except exceptions.GoogleAPIError as failure:
            log.warning("could not release outbox entry %s: %s", lease.ref.id, failure)

    def _mark_published(self, leases: list[_Lease]) -> None:
        """Unconditional: published is final, and whoever else published the entry published
        the same message."""
        if not leases:
            return
        batch = self._db.batch()
        expires_at = _now() + KEEP_PUBLISHED
        for lease in leases:
            batch.update(lease.ref, {"state": State.PUBLISHED.value, "leased_until": None,
                                     "published_at": firestore.SERVER_TIMESTAMP,
                                     "expires_at": expires_at})
        batch.commit(**self._call)
