"""A delivery: one request going to one address on one channel, the unit that is deduped and sent."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from herald import events
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Envelope, Platform
from herald.events import Reason, Status
from herald.providers.base import Outgoing
from herald.templates import Rendered, TemplateError, TemplateStore


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
    """Why it must not be sent (an opt-out), decided when planned; the send step records it as
    `suppressed` unless the delivery's own claim says an earlier run sent it."""
    recipient_locale: str | None = None
    """The user's `locale`: picks a templated request's translation."""
    rendered: Rendered | None = None
    """A templated request's texts for this recipient, once `render` has run."""

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
            provider=PROVIDER_BY_CHANNEL[self.channel],
            **({"locale": self.rendered.locale} if self.rendered else {}), **extra)

    def render(self, templates: TemplateStore) -> Delivery:
        """This delivery with its template rendered in the recipient's locale (itself when the
        request gave its texts inline). TemplateError: no such template, a missing variable."""
        request = self.envelope.request
        if not request.templated:
            return self
        template = templates.get(request.template_type)
        if template is None:
            raise TemplateError(f"no template {request.template_type!r}")
        return dataclasses.replace(
            self, rendered=template.render(self.recipient_locale, request.variables))

    def outgoing(self) -> Outgoing:
        """What the provider sends: the request's inline texts, or the rendered template (email
        takes its subject and HTML body; push data adds the template's to the request's)."""
        request = self.envelope.request
        texts = self.rendered
        title, content, data, html = request.title, request.content, dict(request.data), None
        if texts is not None:
            email = self.channel is Channel.EMAIL
            title = texts.email_subject if email else texts.title
            content, data = texts.content, {**texts.data, **request.data}
            html = texts.email_html if email else None
        return Outgoing(span_id=self.span_id, notification_id=request.notification_id,
                        channel=self.channel, address=self.address or "", title=title or "",
                        content=content or "", priority=request.priority,
                        platform=self.platform, data=data, html=html,
                        category=request.category_type, template=request.template_type)
