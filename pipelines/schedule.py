"""Scheduled sends: a request whose `metadata.sendTime` is ahead is held, not planned.

The hold is an outbox entry (`ingest_function/outbox.py`, `Outbox.hold`) with `not_before` =
sendTime, written once per (sender, notificationId), so it lives in Firestore through pipeline
restarts and redeploys. The outbox replay publishes it once due as the request's `due` release,
which the pipeline then plans and sends like any request; a sender's cancel turns it into a
`canceled` release, which the pipeline records and plans nothing for. Events (all about the
request, none about a delivery):

    scheduled   sendTime ahead: held until `not_before`
    canceled    the canceled release came back
    duplicate   (reason duplicate_notification) the sender already has a scheduled request with
                this notificationId: that one is sent, this one never is
"""

from __future__ import annotations

from typing import Any

from herald import events
from herald.clients import state_client
from herald.contracts import Envelope, Release
from herald.events import Reason, Status
from ingest_function.outbox import Outbox
from herald.settings import Settings
from pipelines.resources import ProcessResource


def outbox_for(settings: Settings) -> Outbox:
    """The outbox in Herald's state database (a ProcessResource factory)."""
    return Outbox(state_client(settings))


class Scheduler:
    """Decides, per request, whether it is planned now (`triage` returns None) or held."""

    def __init__(self, outbox: ProcessResource[Outbox], source_topic_path: str) -> None:
        self._outbox = outbox
        self._source_topic_path = source_topic_path

    def triage(self, envelope: Envelope) -> dict[str, Any] | None:
        """None to plan the request now; else its request-level event, after holding it in the
        outbox if its sendTime is ahead. Raises GoogleAPIError when Firestore fails (the runner
        retries: nothing was emitted)."""
        if envelope.release is Release.CANCELED:
            return events.request_event(envelope, Status.CANCELED)
        held_until = envelope.held_until
        if held_until is None:
            return None
        holder = self._outbox.get().hold(envelope, self._source_topic_path, held_until)
        if holder != envelope.trace_id:
            return events.request_event(envelope, Status.DUPLICATE,
                                        reason=Reason.DUPLICATE_NOTIFICATION.value)
        return events.request_event(envelope, Status.SCHEDULED,
                                    not_before=held_until.isoformat().replace("+00:00", "Z"))
