"""Quiet hours: a user's nightly window, in their own time zone, when routine notifications wait.

A user document may hold `quiet_hours: {"start": "22:00", "end": "07:00"}` (local wall-clock
times, 24 h) beside `timezone` (an IANA name such as "America/New_York"). A normal or low priority
notification planned inside the window is deferred to its end; a high one goes now. The rules come
from the standard library's zoneinfo (the IANA database), so a window across a daylight-saving
change ends at the right instant: 07:00 on the night clocks spring forward is an hour earlier in
UTC than the night before. An end that falls in the skipped hour (02:30 on a spring-forward night)
is the first instant after it (03:30). A malformed window or time zone reads as no quiet hours.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _wall_time(value: Any) -> time | None:
    """"HH:MM" -> time, else None."""
    if not isinstance(value, str):
        return None
    try:
        return time.fromisoformat(value) if len(value) == 5 else None
    except ValueError:
        return None


def user_zone(user: Mapping[str, Any]) -> ZoneInfo | None:
    """The user's `timezone` as a ZoneInfo, None if absent or unknown."""
    name = user.get("timezone")
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def quiet_until(user: Mapping[str, Any], now: datetime) -> datetime | None:
    """The end of the user's quiet hours (UTC) if `now` falls inside them, else None. The window
    includes its start and excludes its end; start after end wraps midnight; start equal to end
    is no window."""
    window = user.get("quiet_hours")
    zone = user_zone(user)
    if not isinstance(window, Mapping) or zone is None:
        return None
    start, end = _wall_time(window.get("start")), _wall_time(window.get("end"))
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        inside, end_day = start <= wall < end, local.date()
    else:
        inside = wall >= start or wall < end
        end_day = local.date() + timedelta(days=1) if wall >= start else local.date()
    return _instant(end_day, end, zone) if inside else None


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant the local clock in `zone` shows `wall` on `day`: the first one if the hour
    repeats (fold 0); in a skipped hour, fold 0 reads it with the offset before the change, which
    is the same distance past the change's instant (02:30 skipped -> 03:30)."""
    return datetime.combine(day, wall, tzinfo=zone).astimezone(timezone.utc)
