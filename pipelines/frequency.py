"""Frequency caps: at most N notifications of a category per user per day, counted durably.

`HERALD_FREQUENCY_CAPS` ("marketing:3,news:5", `Settings.frequency_caps`) sets the caps; a
category without one is not capped, and high priority never is. The day is the user's local
calendar day (their `timezone`, else UTC). Each (user, category, day) is one document in Herald's
state database:

    frequency/{sha256(user, category, day)}
        user_id, category, day   what it counts
        traces                   [trace id]: the requests counted, at most the cap
        expires_at               timestamp: two days after the day, for a Firestore TTL policy

A request is counted once, by its trace, in a transaction: a redelivery of it, or its copy
released after quiet hours, finds its trace already counted and goes on; a request over the cap
is `suppressed` with reason `frequency_capped`. Counting is per request and user, so a push to
three devices is one notification. Kept in Firestore, a pipeline restart does not reset it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, time, timedelta, timezone
from typing import Mapping
from zoneinfo import ZoneInfo

from google.cloud import firestore

from herald.contracts import Envelope, Priority

COLLECTION = "frequency"
KEEP = timedelta(days=2)


class FrequencyCaps:
    """The caps and their counts (`db`: Herald's state database)."""

    def __init__(self, db: firestore.Client, caps: Mapping[str, int]) -> None:
        self._db = db
        self._caps = dict(caps)

    def applies(self, envelope: Envelope) -> bool:
        """Whether the request's category is capped at its priority (never for high)."""
        request = envelope.request
        return request.priority is not Priority.HIGH and request.category_type in self._caps

    def capped(self, envelope: Envelope, user_id: str, zone: ZoneInfo | None,
               now: datetime) -> bool:
        """Count the request for the user's day and say whether it is over the cap (then it
        is not counted). Raises GoogleAPIError when Firestore fails."""
        if not self.applies(envelope):
            return False
        category = envelope.request.category_type
        day = now.astimezone(zone or timezone.utc).date()
        ref = self._db.collection(COLLECTION).document(hashlib.sha256(
            json.dumps([user_id, category, day.isoformat()]).encode()).hexdigest()[:40])
        cap, trace = self._caps[category], envelope.trace_id

        @firestore.transactional
        def count(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction)
            traces = list(snapshot.get("traces")) if snapshot.exists else []
            if trace in traces:
                return False
            if len(traces) >= cap:
                return True
            transaction.set(ref, {
                "user_id": user_id, "category": category, "day": day.isoformat(),
                "traces": [*traces, trace],
                "expires_at": datetime.combine(day, time(), tzinfo=timezone.utc) + KEEP})
            return False

        return count(self._db.transaction())
