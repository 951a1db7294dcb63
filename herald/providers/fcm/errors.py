"""FCM HTTP v1 errors: every documented code and what it means for Herald.

An FCM error answer is Google's error shape, `{"error": {"code": <HTTP status>, "message",
"status": <canonical code>, "details": [...]}}`; the details may hold FCM's own code
(`google.firebase.fcm.v1.FcmError` `errorCode`) and, for a bad field, a `google.rpc.BadRequest`
with `fieldViolations` naming it (https://firebase.google.com/docs/cloud-messaging/error-codes).
Herald records FCM's code when there is one, else the canonical status, and classifies it here.
"""

from __future__ import annotations

import json
from typing import Any

from herald.providers.base import ErrorClass, ErrorRow, ErrorTable

ERROR_CODES_PAGE = "https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode"
GOOGLE_API_ERRORS_PAGE = "https://cloud.google.com/apis/design/errors#handling_errors"
MANAGE_TOKENS_PAGE = ("https://firebase.google.com/docs/cloud-messaging/manage-tokens"
                      "#detect-invalid-token-responses-from-the-fcm-backend")

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

ERRORS = ErrorTable((
    # FCM's own error codes (the FcmError detail's errorCode)
    ErrorRow("UNSPECIFIED_ERROR", ErrorClass.PERMANENT, None,
             "no more information is available", ERROR_CODES_PAGE),
    ErrorRow("INVALID_ARGUMENT", ErrorClass.PERMANENT, 400,
             "a request parameter is invalid (a BadRequest detail names the field); about the "
             "registration token it is TOKEN_GONE, see classify_body", ERROR_CODES_PAGE),
    ErrorRow("UNREGISTERED", ErrorClass.TOKEN_GONE, 404,
             "the registration token is no longer valid (app uninstalled, token expired)",
             ERROR_CODES_PAGE),
    ErrorRow("SENDER_ID_MISMATCH", ErrorClass.CONFIGURATION, 403,
             "the authenticated sender (our project) is not the one the token registered with",
             ERROR_CODES_PAGE),
    ErrorRow("QUOTA_EXCEEDED", ErrorClass.RATE_LIMITED, 429,
             "sending limit exceeded (project, device, topic or overall rate): back off, at "
             "least a minute", ERROR_CODES_PAGE),
    ErrorRow("UNAVAILABLE", ErrorClass.TRANSIENT, 503,
             "the server is overloaded: honour Retry-After, else back off exponentially",
             ERROR_CODES_PAGE),
    ErrorRow("INTERNAL", ErrorClass.TRANSIENT, 500,
             "an unknown internal error: retry as for UNAVAILABLE", ERROR_CODES_PAGE),
    ErrorRow("THIRD_PARTY_AUTH_ERROR", ErrorClass.CONFIGURATION, 401,
             "the APNs certificate or auth key, or the web push auth key, is invalid or missing",
             ERROR_CODES_PAGE),
    # Google's canonical error codes, which the v1 API answers without an FcmError detail
    ErrorRow("FAILED_PRECONDITION", ErrorClass.PERMANENT, 400,
             "the request cannot run in the system's current state", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("OUT_OF_RANGE", ErrorClass.PERMANENT, 400,
             "a value is out of its valid range", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("UNAUTHENTICATED", ErrorClass.CONFIGURATION, 401,
             "missing, invalid or expired OAuth credentials", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("PERMISSION_DENIED", ErrorClass.CONFIGURATION, 403,
             "the credentials may not send for this project (or it does not exist)",
             GOOGLE_API_ERRORS_PAGE),
    ErrorRow("NOT_FOUND", ErrorClass.CONFIGURATION, 404,
             "the resource (the project) was not found; a dead token says UNREGISTERED",
             GOOGLE_API_ERRORS_PAGE),
    ErrorRow("ABORTED", ErrorClass.TRANSIENT, 409,
             "concurrency conflict: retry", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("ALREADY_EXISTS", ErrorClass.PERMANENT, 409,
             "the resource already exists", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("RESOURCE_EXHAUSTED", ErrorClass.RATE_LIMITED, 429,
             "out of quota or rate limited: back off", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("CANCELLED", ErrorClass.TRANSIENT, 499,
             "the request was cancelled by the client", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("DATA_LOSS", ErrorClass.TRANSIENT, 500,
             "unrecoverable data loss or corruption on the server", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("UNKNOWN", ErrorClass.TRANSIENT, 500,
             "an unknown server error", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("NOT_IMPLEMENTED", ErrorClass.PERMANENT, 501,
             "the method is not implemented by the server", GOOGLE_API_ERRORS_PAGE),
    ErrorRow("DEADLINE_EXCEEDED", ErrorClass.TRANSIENT, 504,
             "the server's deadline passed (firebase-admin also reports its own read timeout "
             "so)", GOOGLE_API_ERRORS_PAGE),
))
"""FCM's ErrorCode enum, then Google's canonical codes (each row cites its page)."""


def _details(body: Any, kind: str) -> list[dict[str, Any]]:
    """The `error.details` entries of type `kind` in a decoded error body."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details or [] if isinstance(d, dict) and d.get("@type") == kind]


def fcm_error_code(body: Any) -> str | None:
    """The FcmError detail's errorCode of a decoded error body, if it has one."""
    return next((d.get("errorCode") for d in _details(body, FCM_ERROR_TYPE)), None)


def field_violations(body: Any) -> list[str]:
    """The fields a BadRequest detail names (`message.data[0].value`, ...)."""
    return [violation.get("field", "") for d in _details(body, BAD_REQUEST_TYPE)
            for violation in d.get("fieldViolations") or [] if isinstance(violation, dict)]


def token_is_invalid(code: str, body: Any) -> bool:
    """INVALID_ARGUMENT about the registration token: the FcmError detail says INVALID_ARGUMENT and
    no BadRequest names another field (the docs' second example, "The registration token is not a
    valid FCM registration token"), or a violation names `message.token`. FCM's token guide says
    UNREGISTERED and INVALID_ARGUMENT on a valid payload both mean the token is to be dropped
    (MANAGE_TOKENS_PAGE); Herald's edge has checked the payload (fcm/limits.py), so an
    INVALID_ARGUMENT naming no payload field is the token's."""
    if code != "INVALID_ARGUMENT":
        return False
    fields = field_violations(body)
    if fields:
        return any(field == "message.token" for field in fields)
    return fcm_error_code(body) == "INVALID_ARGUMENT"


def decode(body_text: str | bytes | None) -> Any:
    """An error answer's JSON body, or None when it has none or it is not JSON."""
    try:
        return json.loads(body_text) if body_text else None
    except (ValueError, UnicodeDecodeError):
        return None


def classify_body(code: str, http_status: int | None, body: Any) -> ErrorClass:
    """The class of an FCM error answer (its decoded body): the table's, but TOKEN_GONE for an
    INVALID_ARGUMENT about the registration token."""
    if token_is_invalid(code, body):
        return ErrorClass.TOKEN_GONE
    return ERRORS.classify(code, http_status)


def classify(code: str | None, http_status: int | None = None) -> ErrorClass:
    """The documented class of an FCM or canonical code; unknown codes by their HTTP status."""
    return ERRORS.classify(code, http_status)
