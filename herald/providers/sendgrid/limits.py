"""What SendGrid's mail/send refuses (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/
mail-send and .../mail-send/errors).

No Herald imports: herald/contracts.py imports this module.
"""

from __future__ import annotations

MAX_PERSONALIZATIONS = 1000
"""Personalizations per mail/send request; more is a 400 on `personalizations`."""
MAX_RECIPIENTS = 1000
"""to + cc + bcc across all personalizations of one request."""
MAX_REQUEST_BYTES = 30 * 1024 * 1024
"""The whole request, attachments included: 30 MB (a larger one is a 413)."""
MAX_CUSTOM_ARGS_BYTES = 10_000
"""custom_args of one personalization, with the request-level ones, in total."""
MAX_CATEGORIES = 10
"""Categories per message, each at most 255 characters."""
