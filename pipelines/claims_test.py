"""SendClaims against the Firestore emulator: the verdicts a restarted pipeline relies on."""

from __future__ import annotations

import uuid

import pytest

from herald.contracts import Envelope, Scope, parse_request
from herald.settings import Settings
from pipelines.claims import Claim, ClaimWriteFailed, SendClaims, Verdict

REQUEST = parse_request({
    "userId": "u-1", "notificationId": "n-1", "serviceType": "orders", "categoryType": "delivery",
    "notificationType": "sms", "templateType": "t", "notificationInfo": {"title": "T", "content": "C"},
})


def request(trace_id: str, replay_id: str | None = None) -> Envelope:
    return Envelope(REQUEST, trace_id, "orders-svc", "2026-11-24T00:00:00.000000Z",
                    Scope(only_span="span-a", replay_id=replay_id) if replay_id else Scope())


A, B = request("trace-a"), request("trace-b")


@pytest.fixture
def claims(firestore_emulator: str) -> SendClaims:
    return SendClaims(Settings(project=f"claims-{uuid.uuid4().hex[:8]}"))


def test_first_claim_sends_and_another_request_is_a_duplicate(claims: SendClaims) -> None:
    assert claims.claim("n-1|sms|h1", A, "span-a").verdict is Verdict.SEND
    assert claims.claim("n-1|sms|h1", B, "span-b").verdict is Verdict.DUPLICATE
    assert claims.claim("n-1|sms|h2", B, "span-c").verdict is Verdict.SEND


def test_a_restart_replaying_a_sent_message_gets_its_provider_id_back(claims: SendClaims) -> None:
    claims.claim("n-2|email|h1", A, "span-a")
    claims.mark_all([("n-2|email|h1", SendClaims.sent("SG.123"))])
    again = claims.claim("n-2|email|h1", A, "span-a")
    assert (again.verdict, again.provider_message_id) == (Verdict.ALREADY_SENT, "SG.123")
    assert claims.claim("n-2|email|h1", request("trace-a", "r-1"), "span-a").verdict \
        is Verdict.ALREADY_SENT  # even an operator's replay never sends it twice


def test_an_unfinished_claim_of_the_same_request_is_an_unknown_outcome(claims: SendClaims) -> None:
    claims.claim("n-3|sms|h1", A, "span-a")
    assert claims.claim("n-3|sms|h1", A, "span-a").verdict is Verdict.OUTCOME_UNKNOWN


def test_a_replay_takes_an_unfinished_claim_over_once(claims: SendClaims) -> None:
    claims.claim("n-6|sms|h1", A, "span-a")
    replay = request("trace-a", "r-1")
    assert claims.claim("n-6|sms|h1", replay, "span-a").verdict is Verdict.SEND
    assert claims.claim("n-6|sms|h1", replay, "span-a").verdict is Verdict.OUTCOME_UNKNOWN
    assert claims.claim("n-6|sms|h1", request("trace-b", "r-2"), "span-b").verdict \
        is Verdict.DUPLICATE  # a replay id does not make another request's claim its own


def test_a_refused_delivery_stays_failed_and_a_later_request_may_send(claims: SendClaims) -> None:
    claims.claim("n-4|sms|h1", A, "span-a")
    claims.mark_all([("n-4|sms|h1", SendClaims.failed("21211", "provider_error"))])
    again = claims.claim("n-4|sms|h1", A, "span-a")
    assert again == Claim(Verdict.ALREADY_FAILED, provider_code="21211", reason="provider_error")
    assert claims.claim("n-4|sms|h1", B, "span-b").verdict is Verdict.SEND
    assert claims.claim("n-4|sms|h1", A, "span-a").verdict is Verdict.DUPLICATE  # B holds it now
    # B's own repeat (a redelivery, a deferred resend) is judged as B's, not as another span's.
    assert claims.claim("n-4|sms|h1", B, "span-b").verdict is Verdict.OUTCOME_UNKNOWN
    claims.mark_all([("n-4|sms|h1", SendClaims.sent("SM-b"))])
    assert claims.claim("n-4|sms|h1", B, "span-b") == Claim(Verdict.ALREADY_SENT, "SM-b")


def test_claim_all_judges_each_delivery_of_a_batch_alone_and_keeps_order(claims: SendClaims) -> None:
    claims.claim("n-5|email|held", B, "span-b")  # another request holds this one
    claims.claim("n-5|email|sent", A, "span-s")
    claims.mark_all([("n-5|email|sent", SendClaims.sent("SG.9"))])
    fresh = [(f"n-5|email|h{i}", A, f"span-{i}") for i in range(600)]  # two BatchWrite calls
    batch = [fresh[0], ("n-5|email|held", A, "span-h"), *fresh[1:300],
             ("n-5|email|sent", A, "span-s"), fresh[0], *fresh[300:]]

    claimed = claims.claim_all(batch)

    verdicts = [claim.verdict for claim in claimed]
    assert verdicts[1] is Verdict.DUPLICATE
    assert (verdicts[301], claimed[301].provider_message_id) == (Verdict.ALREADY_SENT, "SG.9")
    assert verdicts[302] is Verdict.OUTCOME_UNKNOWN  # fresh[0] again: claimed just before
    assert verdicts[:1] + verdicts[2:301] + verdicts[303:] == [Verdict.SEND] * 600
    assert [c.verdict for c in claims.claim_all(fresh[:2])] == [Verdict.OUTCOME_UNKNOWN] * 2


def test_mark_all_refuses_to_mark_a_delivery_never_claimed(claims: SendClaims) -> None:
    claims.claim("n-7|sms|h1", A, "span-a")
    with pytest.raises(ClaimWriteFailed, match="1 of 2"):
        claims.mark_all([("n-7|sms|h1", SendClaims.sent("SM1")),
                         ("n-7|sms|h2", SendClaims.sent("SM2"))])
    again = claims.claim("n-7|sms|h1", A, "span-a")  # the one that was claimed is marked anyway
    assert (again.verdict, again.provider_message_id) == (Verdict.ALREADY_SENT, "SM1")


def test_another_delivery_of_the_same_request_to_the_address_is_a_duplicate(
        claims: SendClaims) -> None:
    """A bulk request whose users share an address: one send, the other delivery a duplicate;
    the first delivery's own redelivery is still recognised as its own."""
    assert claims.claim("shared|email|h1", A, "span-user-1").verdict is Verdict.SEND
    assert claims.claim("shared|email|h1", A, "span-user-2").verdict is Verdict.DUPLICATE
    assert claims.claim("shared|email|h1", A, "span-user-1").verdict is Verdict.OUTCOME_UNKNOWN


def test_an_opted_out_delivery_is_settled_by_its_own_claim_only(claims: SendClaims) -> None:
    """Opted out now, perhaps sent before the opt-out (a STOP reply to it): its own claim's send
    wins; another delivery's claim (a sibling's, another request's) says nothing about it."""
    claims.claim("n-7|sms|sent", A, "span-a")
    claims.mark_all([("n-7|sms|sent", SendClaims.sent("SM-7"))])
    claims.claim("n-7|sms|stopped", A, "span-a")  # Twilio 21610: the recipient had replied STOP
    claims.mark_all([("n-7|sms|stopped", SendClaims.failed("21610", "provider_opted_out"))])
    claims.claim("n-7|sms|unfinished", A, "span-a")
    replay, quiet = request("trace-a", "r-1"), request("trace-a", "quiet-span-a")
    settled = claims.settle_unsent([
        ("n-7|sms|sent", A, "span-a"), ("n-7|sms|stopped", A, "span-a"),
        ("n-7|sms|unfinished", A, "span-a"), ("n-7|sms|unfinished", replay, "span-a"),
        ("n-7|sms|unfinished", quiet, "span-a"),
        ("n-7|sms|sent", A, "span-sibling"), ("n-7|sms|sent", B, "span-a"),
        ("n-7|sms|never", A, "span-a")])
    assert settled == [Claim(Verdict.ALREADY_SENT, "SM-7"),
                       Claim(Verdict.ALREADY_FAILED, provider_code="21610",
                             reason="provider_opted_out"),
                       Claim(Verdict.OUTCOME_UNKNOWN), Claim(Verdict.UNCLAIMED),
                       Claim(Verdict.OUTCOME_UNKNOWN),  # a quiet-hours release proves nothing
                       Claim(Verdict.UNCLAIMED), Claim(Verdict.UNCLAIMED),
                       Claim(Verdict.UNCLAIMED)]
    assert claims.claim("n-7|sms|never", A, "span-a").verdict is Verdict.SEND  # nothing written


def test_an_opted_out_replay_that_took_the_claim_over_and_died_is_an_unknown_outcome(
        claims: SendClaims) -> None:
    """An operator's replay took an unfinished claim over and its run died mid-send; its own
    redelivery, now opted out, cannot know whether the provider has it. The original request's
    opted-out copy is not the claim's holder any more, and judged the same way."""
    claims.claim("n-8|sms|h1", A, "span-a")
    replay = request("trace-a", "r-1")
    assert claims.claim("n-8|sms|h1", replay, "span-a").verdict is Verdict.SEND
    assert claims.settle_unsent([("n-8|sms|h1", replay, "span-a"), ("n-8|sms|h1", A, "span-a")]) \
        == [Claim(Verdict.OUTCOME_UNKNOWN), Claim(Verdict.OUTCOME_UNKNOWN)]


def test_a_claim_a_later_request_took_over_says_nothing_of_the_first(claims: SendClaims) -> None:
    claims.claim("n-9|sms|h1", A, "span-a")
    claims.mark_all([("n-9|sms|h1", SendClaims.failed("21211", "provider_error"))])
    assert claims.claim("n-9|sms|h1", B, "span-b").verdict is Verdict.SEND
    assert claims.settle_unsent([("n-9|sms|h1", A, "span-a")]) == [Claim(Verdict.UNCLAIMED)]


def test_a_quiet_hours_release_does_not_take_over_a_claim_a_dead_run_left(
        claims: SendClaims) -> None:
    """A run claimed an SMS at 21:59 and died mid-send; the reconciler's republish met the user's
    quiet hours and was held; at its release the provider may have the first send: unknown, not
    a second send (an operator's replay still may take it over)."""
    claims.claim("n-10|sms|h1", A, "span-a")
    assert claims.claim("n-10|sms|h1", request("trace-a", "quiet-span-a"), "span-a").verdict \
        is Verdict.OUTCOME_UNKNOWN
    assert claims.claim("n-10|sms|h1", request("trace-a", "r-1"), "span-a").verdict is Verdict.SEND
