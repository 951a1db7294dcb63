"""The idempotency ledger against the real Firestore emulator: one winner per key, repeats get
its receipt only once it is accepted, and a released or abandoned claim never answers for a
request that was not stored."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import firestore

from herald.contracts import ContractError
from ingest_function.idempotency import (COLLECTION, HEADER, TTL, Claim, Key, KeyReused, Ledger,
                                         Receipt, StillPending, fingerprint, key_for)

LONG_LEASE = timedelta(seconds=30)


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    """A project of its own per test, so no test sees another's keys."""
    return firestore.Client(project=f"idem-{uuid.uuid4().hex[:10]}")


def ledger(db: firestore.Client, lease: timedelta = LONG_LEASE, ttl: timedelta = TTL) -> Ledger:
    return Ledger(db, lease, {}, ttl)


def new_key() -> Key:
    return Key("orders-svc", uuid.uuid4().hex, HEADER)


def receipt() -> Receipt:
    return Receipt(f"n-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)


def record(db: firestore.Client, key: Key) -> dict | None:
    return db.collection(COLLECTION).document(key.doc_id).get().to_dict()


def test_key_is_the_header_else_the_supplied_notification_id() -> None:
    body = {"notificationId": "n-7"}
    assert key_for("orders-svc", "k-1", body) == Key("orders-svc", "k-1", "Idempotency-Key")
    assert key_for("orders-svc", None, body) == Key("orders-svc", "n-7", "notificationId")
    assert key_for("orders-svc", None, {}) is None


@pytest.mark.parametrize("header", ["", "   ", "k" * 256])
def test_a_bad_header_is_a_contract_error_naming_it(header: str) -> None:
    with pytest.raises(ContractError) as raised:
        key_for("orders-svc", header, {})
    assert raised.value.field == "Idempotency-Key"


def test_keys_are_per_sender() -> None:
    assert Key("orders-svc", "k", HEADER).doc_id != Key("news-svc", "k", HEADER).doc_id


def test_fingerprint_is_of_the_json_not_its_serialisation() -> None:
    assert fingerprint({"a": 1, "b": {"c": [1, 2]}}) == fingerprint({"b": {"c": [1, 2]}, "a": 1})
    assert fingerprint({"a": 1, "b": {"c": [1, 2]}}) != fingerprint({"a": 1, "b": {"c": [2, 1]}})


def test_first_claim_wins_and_repeats_get_its_receipt_once_accepted(db) -> None:
    key, first = new_key(), receipt()
    claim = ledger(db).claim(key, "body-1", first)
    assert isinstance(claim, Claim) and claim.receipt == first
    assert record(db, key)["state"] == "pending"
    ledger(db).accept(claim)
    assert ledger(db).claim(key, "body-1", receipt()) == first
    stored = record(db, key)
    assert stored["state"] == "accepted"
    assert stored["response"] == first.to_json()
    assert stored["expires_at"] - stored["created_at"] == TTL
    assert (stored["sender_client"], stored["key_field"], stored["body_sha256"]) == \
        ("orders-svc", "Idempotency-Key", "body-1")


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "pending"])
def test_same_key_with_another_body_is_refused(db, accepted: bool) -> None:
    key = new_key()
    claim = ledger(db).claim(key, "body-1", receipt())
    if accepted:
        ledger(db).accept(claim)
    with pytest.raises(KeyReused) as raised:
        ledger(db).claim(key, "body-2", receipt())
    assert raised.value.key == key


def test_concurrent_claims_have_one_winner_and_the_rest_wait_for_its_receipt(db) -> None:
    key, start = new_key(), threading.Barrier(8)
    accepting = threading.Event()  # set before the accept: a loser may see it commit at once

    def attempt(_: int) -> tuple[Claim | Receipt, bool]:
        start.wait()
        outcome = ledger(db).claim(key, "body-1", receipt())
        if isinstance(outcome, Claim):
            time.sleep(0.2)  # the others must wait for the acceptance, not answer from "pending"
            accepting.set()
            ledger(db).accept(outcome)
        return outcome, accepting.is_set()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    [winner] = [outcome for outcome, _ in outcomes if isinstance(outcome, Claim)]
    losers = [(outcome, after) for outcome, after in outcomes if outcome is not winner]
    assert losers == [(winner.receipt, True)] * 7


def test_a_released_claim_leaves_no_record(db) -> None:
    key, second = new_key(), receipt()
    ledger(db).release(ledger(db).claim(key, "body-1", receipt()))
    assert record(db, key) is None
    claim = ledger(db).claim(key, "body-1", second)
    assert isinstance(claim, Claim) and claim.receipt == second


def test_an_abandoned_claim_is_taken_over_under_its_ids_after_its_lease(db) -> None:
    key, first, short = new_key(), receipt(), timedelta(milliseconds=500)
    abandoned = ledger(db, lease=short).claim(key, "body-1", first)
    lease_ends = record(db, key)["claimed_until"]
    taken = ledger(db, lease=short).claim(key, "body-1", receipt())
    assert datetime.now(timezone.utc) >= lease_ends  # it waited for the lease, not less
    assert isinstance(taken, Claim) and taken.receipt == first
    ledger(db).accept(abandoned)  # its former owner can no longer accept (or release) it
    assert record(db, key)["state"] == "pending"
    ledger(db).accept(taken)
    assert record(db, key)["state"] == "accepted"


def test_a_live_claim_that_outlasts_the_wait_is_still_pending(db) -> None:
    key = new_key()
    ledger(db).claim(key, "body-1", receipt())
    with pytest.raises(StillPending):
        ledger(db, lease=timedelta(milliseconds=200)).claim(key, "body-1", receipt())


def test_an_expired_record_is_a_new_request(db) -> None:
    key, second, ttl = new_key(), receipt(), timedelta(milliseconds=200)
    ledger(db, ttl=ttl).accept(ledger(db, ttl=ttl).claim(key, "body-1", receipt()))
    time.sleep(0.3)
    claim = ledger(db).claim(key, "body-2", second)
    assert isinstance(claim, Claim) and claim.receipt == second
