"""A delivery: one request going to one address on one channel, the unit that is deduped and sent."""

from __future__ import annotations

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
        return events.span_for(self.envelope.trace_id, self.channel.value,
                               self.device_id or self.recipient_hash or f"user/{self.user_id}")

    @property
    def provider(self) -> str:
        return PROVIDER_BY_CHANNEL[self.channel]

    @property
    def dedupe_key(self) -> str:
        """What 'the same notification' means: same sender id, channel and address."""
        return f"{self.envelope.request.notification_id}|{self.channel.value}|{self.recipient_hash}"

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
                        platform=self.platform, data=dict(request.data))
