"""SendGrid v3 errors: every documented HTTP status of mail/send, and per-recipient failures.

SendGrid has no numeric error codes: an error answer is an HTTP status with
`{"errors": [{"message", "field", "help"}]}`, and Herald records the status as `provider_code`.
A 400 whose `field` names one recipient (`personalizations.N.to.M.email`) is that recipient's
failure, not the request's (see `recipient_of`). A 429 says when to come back in
`X-RateLimit-Reset` (epoch seconds), not Retry-After (see `wait_s`).
"""

from __future__ import annotations

import re
import time
from typing import Callable, Mapping

from herald.providers.base import ErrorClass, ErrorRow, ErrorTable, retry_after

MAIL_SEND_PAGE = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send"
MAIL_SEND_ERRORS_PAGE = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"
V3_ERRORS_PAGE = ("https://www.twilio.com/docs/sendgrid/api-reference/"
                  "how-to-use-the-sendgrid-v3-api/errors")
RATE_LIMITS_PAGE = ("https://www.twilio.com/docs/sendgrid/api-reference/"
                    "how-to-use-the-sendgrid-v3-api/rate-limits")

ERRORS = ErrorTable((
    ErrorRow("400", ErrorClass.PERMANENT, 400,
             "the request is invalid; `errors[].field` names what (a recipient's address fails "
             "only that recipient)", MAIL_SEND_ERRORS_PAGE),
    ErrorRow("401", ErrorClass.CONFIGURATION, 401,
             "the API key is missing, invalid, expired or revoked", V3_ERRORS_PAGE),
    ErrorRow("403", ErrorClass.CONFIGURATION, 403,
             "forbidden: the key lacks mail.send, the from address is not a verified sender, "
             "or the account is blocked", MAIL_SEND_PAGE),
    ErrorRow("404", ErrorClass.CONFIGURATION, 404,
             "the resource does not exist (a wrong host or path)", MAIL_SEND_PAGE),
    ErrorRow("405", ErrorClass.CONFIGURATION, 405,
             "the method is not allowed on the resource", MAIL_SEND_PAGE),
    ErrorRow("406", ErrorClass.CONFIGURATION, 406,
             "the Accept header is missing", V3_ERRORS_PAGE),
    ErrorRow("413", ErrorClass.PERMANENT, 413,
             "the payload is too large (mail/send takes at most 30 MB)", MAIL_SEND_PAGE),
    ErrorRow("415", ErrorClass.PERMANENT, 415,
             "the content type is not supported (JSON only)", MAIL_SEND_PAGE),
    ErrorRow("429", ErrorClass.RATE_LIMITED, 429,
             "too many requests: wait until X-RateLimit-Reset", RATE_LIMITS_PAGE),
    ErrorRow("451", ErrorClass.CONFIGURATION, 451,
             "unavailable for data residency reasons (an EU subuser on the global host)",
             V3_ERRORS_PAGE),
    ErrorRow("500", ErrorClass.TRANSIENT, 500, "an internal server error", MAIL_SEND_PAGE),
    ErrorRow("503", ErrorClass.TRANSIENT, 503, "the v3 API is not available", V3_ERRORS_PAGE),
))
"""SendGrid's documented statuses for mail/send; each row cites its page."""

RECIPIENT_FIELD = re.compile(r"personalizations\.(?P<index>\d+)\.(?:to|cc|bcc)\.\d+\.email")
"""An errors[].field naming one recipient's address (MAIL_SEND_ERRORS_PAGE)."""


def recipient_of(field: str | None) -> int | None:
    """The personalization index an errors[].field names, if it names one recipient."""
    match = RECIPIENT_FIELD.fullmatch(field or "")
    return int(match["index"]) if match else None


def wait_s(headers: Mapping[str, str] | None, clock: Callable[[], float] = time.time
           ) -> float | None:
    """How long a 429 asks Herald to wait: until X-RateLimit-Reset (Unix epoch seconds,
    RATE_LIMITS_PAGE), or a Retry-After if a proxy on the way sent one."""
    reset = next((v for k, v in (headers or {}).items() if k.lower() == "x-ratelimit-reset"), None)
    if reset is not None:
        try:
            return max(0.0, float(reset) - clock())
        except ValueError:
            pass
    return retry_after(headers)


def classify(code: str | int | None, http_status: int | None = None) -> ErrorClass:
    """The documented class of a SendGrid status (as a string or an int)."""
    return ERRORS.classify(code, http_status if http_status is not None else _int(code))


def _int(code: str | int | None) -> int | None:
    try:
        return int(code) if code is not None else None
    except ValueError:
        return None
