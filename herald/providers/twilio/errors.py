"""Twilio's error codes for SMS, at send time and at delivery time, and what each means for Herald.

A refused `messages.create` answers `{"code", "message", "more_info", "status"}` with an HTTP
status (twilio-python raises it as `TwilioRestException`); a message that fails later carries its
code in `ErrorCode` of the status callback (`herald/providers/twilio/status_callbacks.py` reads it
through `classify`). Every code has its page at https://www.twilio.com/docs/api/errors/<code>,
which is each row's source.
"""

from __future__ import annotations

from herald.providers.base import ErrorClass, ErrorRow, ErrorTable

ERRORS_PAGE = "https://www.twilio.com/docs/api/errors/{code}"

_C = ErrorClass

_ROWS: tuple[tuple[int, ErrorClass, int | None, str], ...] = (
    # REST API, account and request level (HTTP status as Twilio documents it)
    (20003, _C.CONFIGURATION, 401, "authentication failed: wrong Account SID or Auth Token"),
    (20005, _C.CONFIGURATION, 401, "the account is not active"),
    (20008, _C.CONFIGURATION, 403, "test credentials cannot reach this resource"),
    (20404, _C.CONFIGURATION, 404, "the resource (the account's Messages list) was not found"),
    (20429, _C.RATE_LIMITED, 429, "too many requests: the account's concurrency limit"),
    (20500, _C.TRANSIENT, 500, "an internal server error"),
    (20503, _C.TRANSIENT, 503, "the service is unavailable"),
    (14107, _C.RATE_LIMITED, None, "over 30 replies between two numbers in 30 seconds"),
    # Messages resource, refused at send time (HTTP 400)
    (21211, _C.UNREACHABLE, 400, "the 'To' number is not a valid phone number"),
    (21212, _C.CONFIGURATION, 400, "the 'From' number is not a valid phone number or short code"),
    (21408, _C.CONFIGURATION, 400, "sending to this region is not enabled on the account"),
    (21601, _C.CONFIGURATION, 400, "the number is not a valid SMS-capable phone number"),
    (21602, _C.PERMANENT, 400, "a message body is required"),
    (21603, _C.CONFIGURATION, 400, "a 'From' number is required"),
    (21604, _C.PERMANENT, 400, "a 'To' number is required"),
    (21606, _C.CONFIGURATION, 400, "the 'From' number is not an SMS-capable number of the account"),
    (21608, _C.CONFIGURATION, 400, "a trial account can only text verified numbers"),
    (21609, _C.CONFIGURATION, 400, "the StatusCallback URL is invalid"),
    (21610, _C.OPTED_OUT, 400, "the recipient replied STOP to this sender (unsubscribed)"),
    (21611, _C.RATE_LIMITED, 400, "the 'From' number's queue holds more than 10 hours of messages"),
    (21612, _C.UNREACHABLE, 400, "the 'To' number cannot be reached from this 'From' number"),
    (21614, _C.UNREACHABLE, 400, "the 'To' number is not a valid mobile number"),
    (21617, _C.PERMANENT, 400, "the body exceeds the 1,600 character limit"),
    (21619, _C.PERMANENT, 400, "a body or a media URL is required"),
    (21620, _C.PERMANENT, 400, "a media URL is invalid"),
    (21621, _C.CONFIGURATION, 400, "the 'From' number is not enabled for MMS"),
    (21623, _C.PERMANENT, 400, "too many media files"),
    (21635, _C.UNREACHABLE, 400, "the 'To' number is a landline"),
    (21660, _C.CONFIGURATION, 400, "the 'From' number does not belong to the account"),
    (21661, _C.CONFIGURATION, 400, "the 'From' number is not SMS-capable"),
    (21701, _C.CONFIGURATION, 400, "the Messaging Service does not exist"),
    (21703, _C.CONFIGURATION, 400, "the Messaging Service has no phone numbers"),
    # Delivery time: the status callback's ErrorCode of a failed or undelivered message
    (30001, _C.RATE_LIMITED, None, "queue overflow: sent faster than the sender's rate"),
    (30002, _C.CONFIGURATION, None, "the account is suspended"),
    (30003, _C.UNREACHABLE, None, "the handset is unreachable (off, out of coverage)"),
    (30004, _C.UNREACHABLE, None, "the message was blocked (by the recipient or the carrier)"),
    (30005, _C.UNREACHABLE, None, "the destination number is unknown or no longer exists"),
    (30006, _C.UNREACHABLE, None, "a landline or a carrier that cannot receive SMS"),
    (30007, _C.PERMANENT, None, "filtered by the carrier as spam or against its rules"),
    (30008, _C.TRANSIENT, None, "an unknown error from the carrier"),
    (30009, _C.TRANSIENT, None, "a segment of a multi-part message was lost"),
    (30010, _C.CONFIGURATION, None, "the message price exceeds the MaxPrice set"),
    (30017, _C.TRANSIENT, None, "the carrier network is congested"),
    (30018, _C.CONFIGURATION, None, "the destination carrier requires sender ID registration"),
    (30019, _C.PERMANENT, None, "the content exceeds the carrier's size limit"),
    (30022, _C.RATE_LIMITED, None, "US A2P 10DLC: the campaign's rate limit was exceeded"),
    (30023, _C.RATE_LIMITED, None, "US A2P 10DLC: the daily message cap was reached"),
    (30024, _C.CONFIGURATION, None, "the numeric sender ID is not provisioned with the carrier"),
    (30027, _C.RATE_LIMITED, None, "US A2P 10DLC: T-Mobile's daily message limit was reached"),
    (30032, _C.CONFIGURATION, None, "the toll-free number is not verified"),
    (30034, _C.CONFIGURATION, None, "US A2P 10DLC: the sending number is not registered"),
    (30036, _C.TRANSIENT, None, "the validity period passed before the message went out"),
    (30038, _C.PERMANENT, None, "a one-time-password body was filtered"),
    (30410, _C.TRANSIENT, None, "the carrier timed out"),
    (30450, _C.PERMANENT, None, "blocked by SMS pumping protection"),
    (63017, _C.RATE_LIMITED, None, "the account sends over 2,000 messages a second"),
    (63038, _C.RATE_LIMITED, None, "the account's daily message limit was reached"),
)

ERRORS = ErrorTable(ErrorRow(str(code), error_class, status, meaning,
                             ERRORS_PAGE.format(code=code))
                    for code, error_class, status, meaning in _ROWS)
"""Twilio's documented error codes for messaging; each row's source is its error page."""


def classify(code: str | int | None, http_status: int | None = None) -> ErrorClass:
    """The documented class of a Twilio error code (from an API answer or a status callback's
    ErrorCode); an undocumented one by its HTTP status, and TRANSIENT without one (a delivery
    failure Herald cannot place)."""
    return ERRORS.classify(code, http_status)
