"""SendClaims against the Firestore emulator: the verdicts a restarted pipeline relies on."""

from __future__ import annotations

import uuid

import pytest

from herald.settings import Settings
from pipelines.claims import SendClaims, Verdict


@pytest.fixture
def claims(firestore_emulator: str) -> SendClaims:
    return SendClaims(Settings(project=f"claims-{uuid.uuid4().hex[:8]}"))


def test_first_claim_sends_and_another_request_is_a_duplicate(claims: SendClaims) -> None:
    assert claims.claim("n-1|sms|h1", "trace-a", "span-a").verdict is Verdict.SEND
    assert claims.claim("n-1|sms|h1", "trace-b", "span-b").verdict is Verdict.DUPLICATE
    assert claims.claim("n-1|sms|h2", "trace-b", "span-c").verdict is Verdict.SEND


def test_a_restart_replaying_a_sent_message_gets_its_provider_id_back(claims: SendClaims) -> None:
    claims.claim("n-2|email|h1", "trace-a", "span-a")
    claims.mark_sent("n-2|email|h1", "SG.123")
    again = claims.claim("n-2|email|h1", "trace-a", "span-a")
    assert (again.verdict, again.provider_message_id) == (Verdict.ALREADY_SENT, "SG.123")


def test_an_unfinished_claim_of_the_same_request_is_an_unknown_outcome(claims: SendClaims) -> None:
    claims.claim("n-3|sms|h1", "trace-a", "span-a")
    assert claims.claim("n-3|sms|h1", "trace-a", "span-a").verdict is Verdict.OUTCOME_UNKNOWN


def test_a_released_claim_can_be_taken_again(claims: SendClaims) -> None:
    claims.claim("n-4|sms|h1", "trace-a", "span-a")
    claims.release("n-4|sms|h1")
    assert claims.claim("n-4|sms|h1", "trace-b", "span-b").verdict is Verdict.SEND


def test_claim_all_keeps_order_and_claims_concurrently(claims: SendClaims) -> None:
    requests = [(f"n-5|email|h{i}", "trace-a", f"span-{i}") for i in range(50)]
    requests.append(("n-5|email|h0", "trace-b", "span-x"))
    verdicts = [claim.verdict for claim in claims.claim_all(requests[:50])]
    assert verdicts == [Verdict.SEND] * 50
    assert claims.claim_all(requests[50:])[0].verdict is Verdict.DUPLICATE
