"""A delivery: one request going to one address on one channel, the unit that is deduped and sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from herald import events
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Envelope, Platform
from herald.events import Reason, Status
from herald.providers.base import Outgoing


@dataclass(frozen=True)
class Delivery:
    """Carries the address itself only until it is sent; events hold `recipient_hash` instead."""

    envelope: Envelope
    user_id: str
    channel: Channel
    address: str | None
    recipient_hash: str | None
    platform: Platform | None = None
    device_id: str | None = None
    skip: Reason | None = None
    """Why it must not be sent (an opt-out), decided when planned and recorded once claimed."""

    @property
    def span_id(self) -> str:
        """The delivery's id: unique per (request, user, channel, device or address). Every user's
        devices may share names (`dev-0`), and users may share an address, so both the user and
        the device (or the address's hash) are part of it. The contract keeps `/` out of user ids,
        so the parts cannot run into one another."""
        return events.span_for(self.envelope.trace_id, self.channel.value, self.user_id,
                               self.device_id or self.recipient_hash or "")

    @property
    def provider(self) -> str:
        return PROVIDER_BY_CHANNEL[self.channel]

    @property
    def dedupe_key(self) -> str:
        """What 'the same notification' means: the same notificationId from the same sender (ids
        are the sender's own, as the edge's idempotency keys are), on the same channel, to the
        same address. JSON, so no id can forge another's key with a separator."""
        request = self.envelope.request
        return json.dumps([self.envelope.sender_client, request.notification_id, self.channel.value,
                           self.recipient_hash], separators=(",", ":"))

    def event(self, status: Status, **extra: Any) -> dict[str, Any]:
        return events.delivery_event(
            self.envelope, self.span_id, status, user_id=self.user_id,
            platform=self.platform and self.platform.value,
            device_id=self.device_id, recipient_hash=self.recipient_hash,
            provider=PROVIDER_BY_CHANNEL[self.channel], **extra)

    def outgoing(self) -> Outgoing:
        request = self.envelope.request
        return Outgoing(span_id=self.span_id, notification_id=request.notification_id,
                        channel=self.channel, address=self.address or "", title=request.title,
                        content=request.content, priority=request.priority,
                        platform=self.platform, data=dict(request.data),
                        category=request.category_type, template=request.template_type)
