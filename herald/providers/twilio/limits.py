"""What Twilio refuses, checked at the edge and by the sandbox.

No Herald imports: herald/contracts.py imports this module.
"""

from __future__ import annotations

MAX_BODY_CHARS = 1600
"""A message body is at most 1,600 characters; longer is refused with error 21617
(https://www.twilio.com/docs/messaging/api/message-resource, `Body`;
https://www.twilio.com/docs/api/errors/21617)."""

DEFAULT_LONG_CODE_MPS = 1.0
"""A US long code sends one message segment per second; Twilio queues the rest (and refuses
with 21611 past 10 hours of queue): https://www.twilio.com/docs/api/errors/21611."""


def sms_body(title: str, content: str) -> str:
    """The SMS Herald sends for a notification: its title, a colon, its content."""
    return f"{title}: {content}"
