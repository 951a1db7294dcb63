"""Durable send claims in Firestore: every delivery is sent at most once, across pipeline restarts.

Beam's keyed state (pipelines/dedupe.py) is the cheap first filter, but it lives as long as the
job; a restarted or redeployed pipeline starts empty. Before a delivery goes to the provider, its
(notificationId, channel, address) is claimed with a create-if-absent in `send_claims`:

- created: send it, then mark the claim `sent` with the provider's id, or `failed` with the
  provider's code when it refused the message (a redelivery of the same request ends `failed`
  again; a later, corrected request may take the claim over);
- held by another request, or by another delivery of this one (a bulk request whose users share
  the address): `duplicate`;
- held by this request and `sent`: a restart replaying the message; its `sent` event is emitted
  again (the same event id) and the provider is not called;
- held by this request and still `claimed`: the previous run died mid-send and the provider may
  or may not have the message; it is dead-lettered as `outcome_unknown` rather than risking a
  second SMS. Only an operator's `herald dlq replay` (a replay id in the envelope's scope) takes
  such a claim over, once: the operator has judged that the provider did not take it.

A delivery planned as opted out is never sent, but it may have been sent before it was: a run
sent it, the user replied STOP (a provider opt-out), and the run died before its `sent` event was
written; the replay plans it opted out. So it is not recorded `suppressed` blindly: its own claim
is read (`settle_unsent`, no write) and a send the claim records wins.

The design requires this for SMS and email. Push is claimed too: the chaos test measured 1.4% of
pushes sent twice without (a request published twice, by a timed-out edge publish that landed and
by the outbox, whose second copy reached a restarted pipeline), against a bar of 0.1%; the price is
two Firestore writes per delivery.

Those writes go out a batch at a time, in Firestore's non-atomic BatchWrite (herald/batch_writes.py:
each write succeeds or fails on its own, so a claim already held fails alone): one call to
claim a provider batch and one to record its outcomes, where one call per delivery made the
Firestore emulator the busiest process of the local stack and held each send slot for a round trip
per delivery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Sequence

from google.api_core import exceptions
from google.cloud import firestore
from google.rpc import code_pb2

from herald import batch_writes
from herald.clients import state_client
from herald.contracts import Envelope
from herald.settings import Settings

COLLECTION = "send_claims"
KEEP = timedelta(days=2)
"""Claims outlive the 24 h idempotency window; `expires_at` is for a Firestore TTL policy."""


class Verdict(StrEnum):
    SEND = "send"
    DUPLICATE = "duplicate"
    ALREADY_SENT = "already_sent"
    ALREADY_FAILED = "already_failed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    UNCLAIMED = "unclaimed"
    """An opted-out delivery that nothing of its own was sent for: no claim of its own, or one a
    replay that takes claims over (`Scope.takes_over_claims`) may set aside."""


@dataclass(frozen=True)
class Claim:
    """What the claim store says about one delivery: `provider_message_id` for ALREADY_SENT,
    the provider's `provider_code` and the failure's `reason` (herald.events.Reason) for
    ALREADY_FAILED."""

    verdict: Verdict
    provider_message_id: str | None = None
    provider_code: str | None = None
    reason: str | None = None


class ClaimWriteFailed(Exception):
    """Firestore refused a claim write for another reason than the claim being held already."""


class SendClaims:
    """Claims keyed by a hash of the delivery's dedupe key (which holds only a recipient hash)."""

    def __init__(self, settings: Settings) -> None:
        self._client = state_client(settings)

    def claim_all(self, requests: Sequence[tuple[str, Envelope, str]]) -> list[Claim]:
        """`claim` for (dedupe_key, envelope, span_id) each, in order: the creates in BatchWrite
        calls, then one read of the claims found held. A document can be written once per call, so
        a dedupe key repeated within `requests` is claimed again after its first, one at a time."""
        now = datetime.now(timezone.utc)
        docs = [self._doc(dedupe_key) for dedupe_key, _, _ in requests]
        first: dict[str, int] = {}
        for index, doc in enumerate(docs):
            first.setdefault(doc.id, index)
        codes = dict(zip(first.values(), self._write_all(
            [batch_writes.create(docs[i], self._new(requests[i][1], requests[i][2], now))
             for i in first.values()])))
        held = [index for index, code in codes.items() if code == code_pb2.ALREADY_EXISTS]
        snapshots = {snapshot.id: snapshot for snapshot in
                     (self._client.get_all([docs[i] for i in held]) if held else ())}
        claims: list[Claim] = []
        for index, (dedupe_key, envelope, span_id) in enumerate(requests):
            code = codes.get(index)
            if code is None:  # a repeat of a key claimed earlier in this batch
                claims.append(self.claim(dedupe_key, envelope, span_id))
            elif code == code_pb2.OK:
                claims.append(Claim(Verdict.SEND))
            elif code == code_pb2.ALREADY_EXISTS:
                claims.append(self._judge(docs[index], snapshots[docs[index].id], envelope,
                                          span_id, now))
            else:
                raise ClaimWriteFailed(f"claim {docs[index].id}: status {code}")
        return claims

    def _doc(self, dedupe_key: str) -> firestore.DocumentReference:
        return self._client.collection(COLLECTION).document(
            hashlib.sha256(dedupe_key.encode()).hexdigest())

    @staticmethod
    def _new(envelope: Envelope, span_id: str, now: datetime) -> dict[str, Any]:
        return {"trace_id": envelope.trace_id, "holder": envelope.claim_token, "span_id": span_id,
                "state": "claimed", "claimed_at": now, "expires_at": now + KEEP}

    def claim(self, dedupe_key: str, envelope: Envelope, span_id: str) -> Claim:
        """One delivery's claim: SEND if it is created now, else what the claim held says."""
        now = datetime.now(timezone.utc)
        doc = self._doc(dedupe_key)
        try:
            doc.create(self._new(envelope, span_id, now))
            return Claim(Verdict.SEND)
        except exceptions.AlreadyExists:
            [snapshot] = self._client.get_all([doc])  # drains its stream; doc.get leaves it open
        return self._judge(doc, snapshot, envelope, span_id, now)

    def _judge(self, doc: firestore.DocumentReference, snapshot: firestore.DocumentSnapshot,
               envelope: Envelope, span_id: str, now: datetime) -> Claim:
        """The verdict on a delivery whose claim someone holds already (`snapshot`)."""
        holder = envelope.claim_token
        held = snapshot.to_dict() or {}
        state, same_request = held.get("state"), held.get("trace_id") == envelope.trace_id
        if same_request and held.get("span_id") != span_id:
            return Claim(Verdict.DUPLICATE)  # one bulk request, two users sharing the address
        if not same_request:
            if state != "failed":
                return Claim(Verdict.DUPLICATE)
            # The provider refused the earlier request outright: a later one may try again.
            return self._take_over(doc, snapshot, {"trace_id": envelope.trace_id,
                                                   "span_id": span_id, "state": "claimed"},
                                   holder, now)
        # Its own claim: what an earlier run got to, else an operator's replay takes it over, once.
        return self._judge_own(held, envelope) or self._take_over(doc, snapshot, {}, holder, now)

    def _take_over(self, doc: firestore.DocumentReference, snapshot: firestore.DocumentSnapshot,
                   changes: dict, holder: str, now: datetime) -> Claim:
        """SEND if the claim is still as read (the precondition decides a race), else unknown."""
        try:
            doc.update({**changes, "holder": holder, "claimed_at": now},
                       option=self._client.write_option(last_update_time=snapshot.update_time))
            return Claim(Verdict.SEND)
        except exceptions.FailedPrecondition:
            return Claim(Verdict.OUTCOME_UNKNOWN)

    def settle_unsent(self, requests: Sequence[tuple[str, Envelope, str]]) -> list[Claim]:
        """What each (dedupe_key, envelope, span_id) of a delivery that will not be sent (opted
        out) ends as, by its own claim, in one read and no write: ALREADY_SENT or ALREADY_FAILED
        when an earlier run of this request got that far; OUTCOME_UNKNOWN when one died mid-send
        (as `claim` judges it); UNCLAIMED otherwise, whoever else holds the address (a sibling's
        or another request's claim says nothing about this delivery, so its status does not
        depend on which of them a run met first)."""
        docs = [self._doc(dedupe_key) for dedupe_key, _, _ in requests]
        held = {snapshot.id: snapshot.to_dict() or {}
                for snapshot in self._client.get_all(docs) if snapshot.exists}
        return [self._judge_unsent(held.get(doc.id, {}), envelope, span_id)
                for doc, (_, envelope, span_id) in zip(docs, requests, strict=True)]

    @staticmethod
    def _judge_unsent(held: dict[str, Any], envelope: Envelope, span_id: str) -> Claim:
        if held.get("trace_id") != envelope.trace_id or held.get("span_id") != span_id:
            return Claim(Verdict.UNCLAIMED)
        # None: a replay (an operator's, or a deferred resend) of a send that never completed;
        # the operator judged, or the provider said, that it was not taken, and now it is opted out.
        return SendClaims._judge_own(held, envelope) or Claim(Verdict.UNCLAIMED)

    @staticmethod
    def _judge_own(held: dict[str, Any], envelope: Envelope) -> Claim | None:
        """The verdict on the delivery's own claim (this request, this span): what an earlier
        run got to; None for an unfinished claim that this replay may take over
        (`Scope.takes_over_claims`)."""
        if held.get("state") == "sent":
            return Claim(Verdict.ALREADY_SENT, held.get("provider_message_id"))
        if held.get("state") == "failed":  # the same request again: it failed, and stays failed
            return Claim(Verdict.ALREADY_FAILED, provider_code=held.get("provider_code"),
                         reason=held.get("reason"))
        if held.get("holder") == envelope.claim_token or not envelope.scope.takes_over_claims:
            return Claim(Verdict.OUTCOME_UNKNOWN)
        return None

    @staticmethod
    def sent(provider_message_id: str | None) -> dict[str, Any]:
        """The mark of a delivery the provider took."""
        return {"state": "sent", "provider_message_id": provider_message_id}

    @staticmethod
    def failed(provider_code: str | None, reason: str) -> dict[str, Any]:
        """The mark of a delivery the provider refused outright, with its failure's reason
        (herald.events.Reason): this request stays failed (a redelivery gets the same answer and
        reason), a later, corrected request may send."""
        return {"state": "failed", "provider_code": provider_code, "reason": reason}

    def mark_all(self, marks: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Record (dedupe_key, `sent(...)` or `failed(...)`) on each delivery's claim, in BatchWrite
        calls; raises ClaimWriteFailed if any was not written (the claim stays `claimed`)."""
        codes = self._write_all([batch_writes.update(self._doc(dedupe_key), mark)
                                 for dedupe_key, mark in marks])
        refused = [code for code in codes if code != code_pb2.OK]
        if refused:
            raise ClaimWriteFailed(f"{len(refused)} of {len(codes)} claim marks refused: "
                                   f"statuses {sorted(set(refused))}")

    def _write_all(self, stages: list[batch_writes.Stage]) -> list[int]:
        """Each write's status code, in order."""
        return [status.code for status, _ in batch_writes.write_each(self._client, stages)]
