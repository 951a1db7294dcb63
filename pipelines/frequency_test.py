"""FrequencyCaps on the Firestore emulator: counted per request and user per local day, a
redelivery counted once, high priority never capped, the count kept in Firestore."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from herald.clients import state_client
from herald.contracts import new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.settings import Settings, parse_frequency_caps
from pipelines.frequency import COLLECTION, FrequencyCaps

NEW_YORK = ZoneInfo("America/New_York")


def marketing(priority: str = "normal"):
    return new_envelope(parse_request({**DESIGN_BODY, "categoryType": "marketing",
                                       "priority": priority}), "svc")


def test_a_category_is_capped_per_user_and_local_day(firestore_emulator) -> None:
    db = state_client(Settings(project=f"caps-{uuid.uuid4().hex[:8]}"))
    caps = FrequencyCaps(db, parse_frequency_caps("marketing:2"))
    evening = datetime(2026, 3, 8, 3, 0, tzinfo=timezone.utc)  # 22:00 on 7 March in New York
    first, second, third = marketing(), marketing(), marketing()
    assert [caps.capped(e, "u-1", NEW_YORK, evening) for e in (first, second, third)] == \
        [False, False, True]
    assert caps.capped(first, "u-1", NEW_YORK, evening) is False  # a redelivery: counted once
    assert caps.capped(third, "u-2", NEW_YORK, evening) is False  # another user
    assert caps.capped(marketing("high"), "u-1", NEW_YORK, evening) is False  # never capped
    other = dataclasses.replace(third, request=dataclasses.replace(third.request,
                                                                   category_type="delivery"))
    assert caps.capped(other, "u-1", NEW_YORK, evening) is False  # no cap on the category
    # 05:00Z is still 7 March in New York (00:00 EST at 05:00Z): the same day, still capped...
    assert caps.capped(marketing(), "u-1", NEW_YORK, datetime(2026, 3, 8, 4, 59,
                                                              tzinfo=timezone.utc)) is True
    # ...and a new day from local midnight; the counts live in Firestore, with an expiry.
    assert caps.capped(third, "u-1", NEW_YORK, datetime(2026, 3, 8, 5, 0,
                                                        tzinfo=timezone.utc)) is False
    assert FrequencyCaps(db, {"marketing": 2}).capped(marketing(), "u-1", NEW_YORK,
                                                      evening) is True  # a new process
    days = {doc.get("day"): doc.get("expires_at") for doc in db.collection(COLLECTION).stream()
            if doc.get("user_id") == "u-1"}
    assert days["2026-03-07"] == datetime(2026, 3, 9, tzinfo=timezone.utc)


def test_caps_are_parsed_from_the_setting() -> None:
    assert Settings.from_env({"HERALD_FREQUENCY_CAPS": "marketing:3, news:5"}).frequency_caps == {
        "marketing": 3, "news": 5}
    assert Settings.from_env({}).frequency_caps == {}
