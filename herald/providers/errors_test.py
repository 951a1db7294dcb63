"""The three providers' error tables: every row is classified as documented, cites its page, and
the special readings (FCM's token INVALID_ARGUMENT, SendGrid's recipient fields and reset time)."""

from __future__ import annotations

import pytest

from herald.providers.base import ErrorClass, ErrorRow
from herald.providers.fcm import errors as fcm
from herald.providers.sendgrid import errors as sendgrid
from herald.providers.twilio import errors as twilio

TABLES = {"fcm": fcm, "twilio": twilio, "sendgrid": sendgrid}
DOC_HOSTS = {"fcm": ("https://firebase.google.com/docs/", "https://cloud.google.com/apis/design/"),
             "twilio": ("https://www.twilio.com/docs/api/errors/",),
             "sendgrid": ("https://www.twilio.com/docs/sendgrid/",)}
ROWS = [(name, row) for name, module in TABLES.items() for row in module.ERRORS.rows]


@pytest.mark.parametrize(("provider", "row"), ROWS,
                         ids=[f"{name}-{row.code}" for name, row in ROWS])
def test_each_documented_code_is_classified_as_its_row_says(provider: str, row: ErrorRow) -> None:
    module = TABLES[provider]
    assert module.classify(row.code) is row.error_class
    # the documented class wins over what the bare HTTP status would suggest
    assert module.classify(row.code, 599) is row.error_class
    assert row.source.startswith(DOC_HOSTS[provider])
    assert row.meaning


@pytest.mark.parametrize("code", [row.code for row in twilio.ERRORS.rows])
def test_each_twilio_row_cites_its_own_error_page(code: str) -> None:
    assert twilio.ERRORS[code].source == f"https://www.twilio.com/docs/api/errors/{code}"


def test_the_codes_the_issue_names_have_the_class_herald_acts_on() -> None:
    assert fcm.classify("UNREGISTERED") is ErrorClass.TOKEN_GONE
    assert fcm.classify("SENDER_ID_MISMATCH") is ErrorClass.CONFIGURATION
    assert fcm.classify("QUOTA_EXCEEDED") is ErrorClass.RATE_LIMITED
    assert twilio.classify(21610) is ErrorClass.OPTED_OUT
    assert {twilio.classify(code) for code in (30003, 30005, 30006)} == {ErrorClass.UNREACHABLE}
    assert sendgrid.classify(429) is ErrorClass.RATE_LIMITED


def test_undocumented_codes_fall_back_to_their_http_status() -> None:
    assert twilio.classify(99999, 503) is ErrorClass.TRANSIENT
    assert twilio.classify(None, 429) is ErrorClass.RATE_LIMITED
    assert twilio.classify(99999) is ErrorClass.TRANSIENT  # a delivery failure of no known kind
    assert fcm.classify("SOMETHING_NEW", 400) is ErrorClass.PERMANENT
    assert sendgrid.classify("418") is ErrorClass.PERMANENT


def _fcm_body(fcm_code: str | None, *violations: str) -> dict:
    details = [{"@type": fcm.FCM_ERROR_TYPE, "errorCode": fcm_code}] if fcm_code else []
    if violations:
        details.append({"@type": fcm.BAD_REQUEST_TYPE, "fieldViolations": [
            {"field": field, "description": "bad"} for field in violations]})
    return {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "m",
                      "details": details}}


@pytest.mark.parametrize(("body", "error_class"), [
    (_fcm_body("INVALID_ARGUMENT"), ErrorClass.TOKEN_GONE),  # the docs' invalid-token example
    (_fcm_body(None, "message.token"), ErrorClass.TOKEN_GONE),
    (_fcm_body(None, "message.data[0].value"), ErrorClass.PERMANENT),  # a payload field
    (_fcm_body("INVALID_ARGUMENT", "message.android.ttl"), ErrorClass.PERMANENT),
    (None, ErrorClass.PERMANENT),
])
def test_fcm_invalid_argument_is_a_dead_token_only_when_about_the_token(body, error_class):
    assert fcm.classify_body("INVALID_ARGUMENT", 400, body) is error_class


def test_fcm_sender_id_mismatch_is_never_a_dead_token() -> None:
    body = _fcm_body("SENDER_ID_MISMATCH")
    assert fcm.classify_body("SENDER_ID_MISMATCH", 403, body) is ErrorClass.CONFIGURATION


@pytest.mark.parametrize(("field", "index"), [
    ("personalizations.7.to.0.email", 7), ("personalizations.0.cc.2.email", 0),
    ("personalizations.3.to", None), ("from.email", None), (None, None)])
def test_sendgrid_fields_naming_one_recipient(field, index):
    assert sendgrid.recipient_of(field) == index


def test_sendgrid_waits_until_its_rate_limit_resets() -> None:
    assert sendgrid.wait_s({"X-RateLimit-Reset": "1000090"}, clock=lambda: 1_000_000.0) == 90.0
    assert sendgrid.wait_s({"x-ratelimit-reset": "999"}, clock=lambda: 1_000_000.0) == 0.0
    assert sendgrid.wait_s({"Retry-After": "5"}) == 5.0
    assert sendgrid.wait_s({}) is None
