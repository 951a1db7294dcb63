"""Send-step helpers; the send branches themselves are counted in herald_pipeline_test.py."""

from __future__ import annotations

from herald.contracts import Priority
from pipelines.send import BRANCH_NAMES, lane_of, redact


def test_provider_messages_lose_the_recipient_address() -> None:
    message = "The 'To' number +15550000001 is not a valid phone number."
    assert redact(message, "+15550000001") == "The 'To' number <recipient> is not a valid phone number."
    assert redact(None, "+15550000001") is None and redact("x", None) == "x"


def test_only_high_priority_takes_the_urgent_lane() -> None:
    assert [lane_of(p).name for p in Priority] == ["urgent", "routine", "routine"]
    assert len(BRANCH_NAMES) == 6
