"""Idempotency at the edge: a request repeated within 24 h gets its original answer and is not
published again; the same key with a different body is refused.

Senders retry when they did not see our answer (a timeout, a dropped connection), so a retry must
not become a second notification. The key is the sender's `Idempotency-Key` header, or else the
notificationId the sender chose (a generated id is never a key: it differs on every retry). Keys
are per sender: two services may use the same key for different things.

One record per key, `idempotency/{sha256(sender_client, key)}`:

    sender_client  str
    key_field      "Idempotency-Key" | "notificationId"   (where the key came from; named in a 409)
    body_sha256    hex digest of the canonical JSON body
    state          "pending" | "accepted"
    response       {"notificationId": str, "traceId": str}   (the answer a repeat gets again)
    created_at     timestamp
    claimed_until  timestamp   (how long a pending claim is honoured)
    expires_at     timestamp   (created_at + 24 h: a Firestore TTL policy deletes it; checked on
                               read as well, since TTL deletion can lag by a day)

A record is created `pending` with create-if-absent *before* the request is published, so of
concurrent duplicates exactly one wins. A pending record answers nobody: the request may still
fail to be stored, and a 202 must mean stored. It turns `accepted` once the request is on Pub/Sub,
or in the same atomic commit as its outbox entry; only then do repeats get the stored answer. A
claimant that fails to store the request deletes its claim; if even that fails (Firestore is down)
the claim stays pending until `claimed_until`, after which a repeat takes it over under the same
ids, so anything the first attempt did publish is the same trace, which the pipeline drops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Mapping

from google.api_core import exceptions
from google.cloud import firestore

from herald.contracts import ContractError, Envelope
from ingest_function.write_batcher import WriteBatcher

HEADER = "Idempotency-Key"
COLLECTION = "idempotency"
TTL = timedelta(hours=24)
"""How long a key is remembered (Novu and Knock keep 24 h)."""
MAX_KEY_LENGTH = 255
POLL_S = 0.05
"""How often a duplicate looks again while the first request with its key is being stored."""

log = logging.getLogger("herald.ingest.idempotency")


class State(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"


_ACCEPTED = {"state": State.ACCEPTED.value}


@dataclass(frozen=True)
class Key:
    """A sender's idempotency key; `field` is where it came from, so a 409 names it."""

    sender_client: str
    value: str
    field: str

    @property
    def doc_id(self) -> str:
        """Hashed: keys are arbitrary sender strings (a `/` would break a document path)."""
        return hashlib.sha256(f"{self.sender_client}\x00{self.value}".encode()).hexdigest()


def key_for(sender_client: str, header: str | None, body: Mapping[str, Any]) -> Key | None:
    """The request's key: the header if given, else the notificationId the sender supplied, else
    None. `body` is the validated JSON body, so a present notificationId is a non-empty string."""
    if header is not None:
        if not header.strip() or len(header) > MAX_KEY_LENGTH:
            raise ContractError(HEADER, f"must be 1 to {MAX_KEY_LENGTH} characters")
        return Key(sender_client, header, HEADER)
    supplied = body.get("notificationId")
    return Key(sender_client, supplied, "notificationId") if supplied is not None else None


def fingerprint(body: Any) -> str:
    """Hash of the body as JSON with sorted keys, so a retry that re-serialises the same request
    (other key order, other whitespace) is still the same body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Receipt:
    """The answer a request got, and the one its repeats get again."""

    notification_id: str
    trace_id: str

    @classmethod
    def of(cls, envelope: Envelope) -> Receipt:
        return cls(envelope.request.notification_id, envelope.trace_id)

    def stamp(self, envelope: Envelope) -> Envelope:
        """`envelope` under these ids: a takeover finishes the original request as itself."""
        return replace(envelope, trace_id=self.trace_id,
                       request=replace(envelope.request, notification_id=self.notification_id))

    def to_json(self) -> dict[str, str]:
        return {"notificationId": self.notification_id, "traceId": self.trace_id}


@dataclass(frozen=True)
class Claim:
    """Ownership of a pending record: store the request as `receipt`, then accept or release.
    `version` is the record's update time after our write; later writes are conditional on it,
    so a claim that was taken over cannot be accepted or deleted by its former owner."""

    ref: firestore.DocumentReference
    receipt: Receipt
    version: datetime


class KeyReused(Exception):
    """The key was used in the last 24 h with a different body."""

    def __init__(self, key: Key) -> None:
        super().__init__(f"{key.field} reused with a different body")
        self.key = key


class StillPending(Exception):
    """Another request with this key is being stored and did not finish while we waited."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """The `idempotency` collection. `lease` must cover a claimant's worst case from claim to
    accept or release; `call` (retry, timeout) bounds every Firestore call, since a sender waits.
    Writes go through a WriteBatcher, so concurrent requests share BatchWrite calls."""

    def __init__(self, db: firestore.Client, lease: timedelta, call: Mapping[str, Any],
                 ttl: timedelta = TTL) -> None:
        self._db = db
        self._lease = lease
        self._call = call
        self._ttl = ttl
        self._writes = WriteBatcher(db, call)

    def claim(self, key: Key, body_sha256: str, proposed: Receipt) -> Claim | Receipt:
        """A Claim when this request must be stored (first of its key, or taking over an expired
        record or an abandoned claim), else the Receipt of the accepted original. Waits while
        another request holds a live claim on the key. Raises KeyReused, StillPending, or a
        GoogleAPIError when Firestore does not answer."""
        ref = self._db.collection(COLLECTION).document(key.doc_id)
        give_up = time.monotonic() + self._lease.total_seconds()
        absent = True
        while True:
            now = _now()
            if absent:
                try:
                    written = self._writes.create(ref, self._record(key, body_sha256, proposed, now))
                    return Claim(ref, proposed, written)
                except exceptions.AlreadyExists:
                    pass
            [snapshot] = self._db.get_all([ref], **self._call)  # drains its stream, unlike ref.get
            absent = not snapshot.exists
            if absent:
                continue  # its claimant released it since: try to create it again
            held = snapshot.to_dict()
            original = Receipt(held["response"]["notificationId"], held["response"]["traceId"])
            if held["expires_at"] <= now:
                taking = proposed  # remembered for a day only: this is a new request
            elif held["body_sha256"] != body_sha256:
                raise KeyReused(key)
            elif held["state"] == State.ACCEPTED:
                return original
            elif held["claimed_until"] <= now:
                taking = original  # abandoned: finish it under its ids
            elif time.monotonic() > give_up:
                raise StillPending(key.value)
            else:
                time.sleep(POLL_S)
                continue
            try:
                unchanged = self._db.write_option(last_update_time=snapshot.update_time)
                written = self._writes.update(ref, self._record(key, body_sha256, taking, now),
                                              unchanged)
                return Claim(ref, taking, written)
            except exceptions.FailedPrecondition:
                continue  # someone else changed it first: look again

    def stage_accept(self, batch: firestore.WriteBatch, claim: Claim) -> None:
        """Add the claim's acceptance to `batch`, so it commits with the write that stored the
        request (the outbox entry): both or neither."""
        batch.update(claim.ref, _ACCEPTED, option=self._owned(claim))

    def accept(self, claim: Claim) -> None:
        """Mark the claim accepted once its request is on Pub/Sub. Best effort: if Firestore fails
        here the record stays pending and a repeat, after the lease, republishes the same trace,
        which the pipeline drops as a redelivery."""
        try:
            self._writes.update(claim.ref, _ACCEPTED, self._owned(claim))
        except exceptions.GoogleAPIError as error:
            log.warning("could not mark trace %s accepted: %s", claim.receipt.trace_id, error)

    def release(self, claim: Claim) -> None:
        """Delete the claim of a request that could not be stored, so a retry starts afresh.
        Best effort: a claim that cannot be deleted stays pending (it answers nobody) until its
        lease ends."""
        try:
            self._writes.delete(claim.ref, self._owned(claim))
        except exceptions.GoogleAPIError as error:
            log.warning("could not release the claim of trace %s: %s", claim.receipt.trace_id,
                        error)

    def accepted(self, key: Key) -> bool:
        """Whether a request with this key was accepted in the last 24 h (expired records not
        yet deleted by the TTL policy count as gone)."""
        record = self._db.collection(COLLECTION).document(key.doc_id).get(**self._call).to_dict()
        return bool(record) and record["state"] == State.ACCEPTED.value and (
            record["expires_at"] > _now())

    def _record(self, key: Key, body_sha256: str, receipt: Receipt,
                now: datetime) -> dict[str, Any]:
        return {
            "sender_client": key.sender_client,
            "key_field": key.field,
            "body_sha256": body_sha256,
            "state": State.PENDING.value,
            "response": receipt.to_json(),
            "created_at": now,
            "claimed_until": now + self._lease,
            "expires_at": now + self._ttl,
        }

    def _owned(self, claim: Claim) -> Any:
        return self._db.write_option(last_update_time=claim.version)
