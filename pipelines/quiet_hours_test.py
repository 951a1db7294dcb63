"""quiet_until: in the user's zone, across daylight-saving changes (the changeover nights of 2026:
America/New_York springs forward on 8 March and falls back on 1 November, Europe/Berlin on 29
March and 25 October)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipelines.quiet_hours import quiet_until

NIGHT = {"start": "22:00", "end": "07:00"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def user(zone: str, window=NIGHT) -> dict:
    return {"timezone": zone, "quiet_hours": window}


@pytest.mark.parametrize("zone, now, end", [
    # An ordinary night: 23:00 EST is 04:00Z, 07:00 EST is 12:00Z.
    ("America/New_York", "2026-02-10T04:00", "2026-02-10T12:00"),
    # Spring forward (02:00 EST -> 03:00 EDT on 8 March): 00:00 EST = 05:00Z, the night ends at
    # 07:00 EDT = 11:00Z, an hour earlier in UTC than a fixed offset would say.
    ("America/New_York", "2026-03-08T05:00", "2026-03-08T11:00"),
    # Fall back (02:00 EDT -> 01:00 EST on 1 November): 00:30 EDT = 04:30Z, ends 07:00 EST = 12:00Z.
    ("America/New_York", "2026-11-01T04:30", "2026-11-01T12:00"),
    # Inside the repeated hour itself (the second 01:30, EST = 06:30Z).
    ("America/New_York", "2026-11-01T06:30", "2026-11-01T12:00"),
    # Berlin: 23:00 CET on 28 March = 22:00Z; 07:00 CEST on the 29th = 05:00Z.
    ("Europe/Berlin", "2026-03-28T22:00", "2026-03-29T05:00"),
    # Berlin falls back on 25 October: 23:30 CEST on the 24th = 21:30Z; 07:00 CET = 06:00Z.
    ("Europe/Berlin", "2026-10-24T21:30", "2026-10-25T06:00"),
    # Already past midnight, inside: 06:59 EST = 11:59Z.
    ("America/New_York", "2026-02-10T11:59", "2026-02-10T12:00"),
])
def test_inside_the_window_it_ends_at_local_end_time(zone, now, end) -> None:
    assert quiet_until(user(zone), utc(now)) == utc(end)


@pytest.mark.parametrize("zone, now", [
    ("America/New_York", "2026-02-10T12:00"),  # 07:00 EST: the end is not inside
    ("America/New_York", "2026-02-10T02:59"),  # 21:59 EST
    ("America/New_York", "2026-03-08T11:00"),  # 07:00 EDT on the spring-forward morning
    ("Europe/Berlin", "2026-10-25T06:00"),     # 07:00 CET on the fall-back morning
])
def test_outside_the_window_nothing_waits(zone, now) -> None:
    assert quiet_until(user(zone), utc(now)) is None


def test_a_window_ending_in_the_skipped_hour_ends_just_after_it() -> None:
    """02:30 does not exist in New York on 8 March 2026: the window ends at 03:30 EDT = 07:30Z."""
    early = user("America/New_York", {"start": "23:00", "end": "02:30"})
    assert quiet_until(early, utc("2026-03-08T05:00")) == utc("2026-03-08T07:30")


def test_a_daytime_window_does_not_wrap() -> None:
    lunch = user("Europe/Berlin", {"start": "12:00", "end": "13:30"})
    assert quiet_until(lunch, utc("2026-07-01T10:15")) == utc("2026-07-01T11:30")  # CEST
    assert quiet_until(lunch, utc("2026-07-01T09:59")) is None


@pytest.mark.parametrize("document", [
    {"quiet_hours": NIGHT},  # no time zone
    {"timezone": "Mars/Olympus", "quiet_hours": NIGHT},
    {"timezone": "America/New_York", "quiet_hours": {"start": "22:00"}},
    {"timezone": "America/New_York", "quiet_hours": {"start": "10pm", "end": "7am"}},
    {"timezone": "America/New_York", "quiet_hours": ["22:00", "07:00"]},
    {"timezone": "America/New_York", "quiet_hours": {"start": "07:00", "end": "07:00"}},
    {"timezone": "America/New_York"},
])
def test_a_malformed_or_absent_window_reads_as_none(document) -> None:
    assert quiet_until(document, utc("2026-02-10T04:00")) is None
