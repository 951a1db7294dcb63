"""Pacing: frequency caps and quiet hours, applied to a request's planned deliveries per user.

After planning (pipelines/recipients.py), each user's deliveries that would be sent are checked,
high priority excepted: over the category's frequency cap (pipelines/frequency.py) they are
suppressed `frequency_capped`; inside the user's quiet hours (pipelines/quiet_hours.py) each is
deferred to the window's end the way a provider's wait is (pipelines/send.py): an outbox entry
scoped to the delivery under the replay id `quiet-<span>` (one per delivery however often it is
planned), published once due and then sent without a second look at the window, and a `deferred`
event (reason `quiet_hours`, `not_before` the window's end).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Iterator, Mapping

from google.api_core import exceptions

from herald.contracts import QUIET_REPLAY_PREFIX, Envelope, Priority, Scope
from herald.events import Reason, Status
from ingest_function.outbox import Outbox
from pipelines.delivery import Delivery
from pipelines.frequency import FrequencyCaps
from pipelines.quiet_hours import quiet_until, user_zone
from pipelines.resources import ProcessResource

Planned = tuple[Delivery, Reason | None]


class Pacing:
    """Caps and quiet hours for the deliveries of one request (see the module docstring)."""

    def __init__(self, caps: ProcessResource[FrequencyCaps], outbox: ProcessResource[Outbox],
                 source_topic_path: str) -> None:
        self._caps = caps
        self._outbox = outbox
        self._source_topic_path = source_topic_path

    def pace(self, envelope: Envelope, planned: list[Planned],
             users: Mapping[str, Mapping[str, Any] | None], now: datetime
             ) -> Iterator[tuple[Delivery, Reason | None, datetime | None]]:
        """Each planned delivery with its reason (`frequency_capped` added) and, for one to defer
        for quiet hours, the window's end. Raises GoogleAPIError when Firestore fails."""
        sendable = {delivery.user_id for delivery, reason in planned
                    if reason is None and delivery.recipient_hash is not None
                    and envelope.scope.covers(delivery.span_id)}
        capped, quiet = set(), {}
        if envelope.request.priority is not Priority.HIGH:
            caps = self._caps.get()
            for user_id in sorted(sendable):
                user = users.get(user_id) or {}
                if caps.applies(envelope) and caps.capped(envelope, user_id, user_zone(user), now):
                    capped.add(user_id)
                elif not envelope.scope.quiet_release:
                    quiet[user_id] = quiet_until(user, now)
        for delivery, reason in planned:
            if delivery.user_id in capped and reason is None:
                yield delivery, Reason.FREQUENCY_CAPPED, None
            elif reason is None and delivery.recipient_hash is not None:
                yield delivery, None, quiet.get(delivery.user_id)
            else:
                yield delivery, reason, None

    def defer(self, delivery: Delivery, until: datetime) -> dict[str, Any]:
        """Hold one delivery in the outbox until `until`; its `deferred` event."""
        envelope = dataclasses.replace(delivery.envelope, scope=Scope(
            only_span=delivery.span_id, replay_id=f"{QUIET_REPLAY_PREFIX}{delivery.span_id}"))
        try:
            self._outbox.get().defer(envelope, self._source_topic_path, until, "quiet hours")
        except exceptions.AlreadyExists:
            pass  # planned before (a redelivery): held already
        return delivery.event(Status.DEFERRED, reason=Reason.QUIET_HOURS.value,
                              not_before=until.isoformat().replace("+00:00", "Z"))
