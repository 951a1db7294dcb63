"""Twilio's status callbacks and incoming messages: every documented fixture read right, and every
signing scheme Twilio documents verified (and its tampered forms refused)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from herald.contracts import ContractError
from herald.providers import contract_fixtures
from herald.providers.twilio import status_callbacks

FIXTURES = contract_fixtures.load("twilio", "callbacks")
RECEIVED = "2026-11-02T10:00:00.000000Z"
TOKEN, SHARED = "auth-token", "shared-key-secret"


def read(fixture: dict[str, Any]) -> list:
    if fixture["kind"] == "incoming_message":
        return status_callbacks.incoming_message(fixture["form"], RECEIVED)
    return status_callbacks.status_callback(fixture["form"], fixture["query"], RECEIVED)


def test_every_documented_message_status_has_a_fixture():
    statuses = {f["form"]["MessageStatus"] for f in FIXTURES.values()
                if f["kind"] == "status_callback"}

    assert statuses == set(status_callbacks.MESSAGE_STATUSES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_documented_payload_is_read_as_documented(name):
    fixture = FIXTURES[name]

    callbacks = read(fixture)

    assert len(callbacks) == len(fixture["expected"])
    for callback, wanted in zip(callbacks, fixture["expected"]):
        wanted = {**wanted, "occurred_at": RECEIVED if wanted["occurred_at"] == "received"
                  else wanted["occurred_at"]}
        assert {k: getattr(callback, k) for k in wanted} == wanted
        assert callback.provider == "twilio"
        if fixture["kind"] == "status_callback":
            assert callback.provider_message_id == fixture["form"]["MessageSid"]
            assert callback.span_id == fixture["query"].get("span_id")


@pytest.mark.parametrize(("value", "expected"), [
    ("2401151230", "2024-01-15T12:30:00.000000Z"),
    (None, RECEIVED),
    ("24011512", RECEIVED),          # not YYMMDDhhmm
    ("2413151230", RECEIVED),        # month 13
    ("2611021200", RECEIVED),        # after the callback arrived: a carrier clock ahead of UTC
])
def test_raw_dlr_done_date_is_the_carriers_time_when_it_is_one(value, expected):
    assert status_callbacks.raw_dlr_done_date(value, RECEIVED) == expected


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_a_status_callback_needs_its_sid_and_status(missing):
    form = {k: v for k, v in FIXTURES["status_delivered"]["form"].items() if k != missing}

    with pytest.raises(ContractError) as raised:
        status_callbacks.status_callback(form, {}, RECEIVED)

    assert raised.value.field == missing


def test_an_undocumented_status_is_refused():
    form = {**FIXTURES["status_delivered"]["form"], "MessageStatus": "teleported"}

    with pytest.raises(ContractError):
        status_callbacks.status_callback(form, {}, RECEIVED)


def test_a_repeated_callback_has_the_same_id_and_other_events_do_not():
    def ids(name: str, received: str = RECEIVED) -> list[str]:
        fixture = FIXTURES[name]
        return [c.callback_id for c in status_callbacks.status_callback(
            fixture["form"], fixture["query"], received)]

    assert ids("status_delivered") == ids("status_delivered", "2026-11-02T10:00:05.000000Z")
    assert ids("status_delivered") == ids("status_delivered_unknown_fields")
    others = [i for name in ("status_sent", "status_delivered", "status_undelivered_30003",
                             "status_undelivered_30005", "status_failed_30008") for i in ids(name)]
    assert len(set(others)) == 5


URL = "https://herald.example/v1/callbacks/twilio?notification_id=n-1&span_id=s-1"
FORM = FIXTURES["status_delivered"]["form"]


def sign(secret: str, url: str, params: dict[str, str], digest=hashlib.sha1) -> str:
    """Twilio's scheme written out: HMAC over the URL then each name and value in name order."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(secret.encode(), signed.encode(), digest).digest()).decode()


def check(url: str, params: Any, headers: dict[str, str], shared: str | None = SHARED) -> bool:
    return status_callbacks.signed(url, params, headers, auth_token=TOKEN, shared_key=shared)


def test_the_auth_token_hmac_sha1_signature_verifies():
    assert check(URL, FORM, {"X-Twilio-Signature": sign(TOKEN, URL, FORM)})
    # Twilio may have signed the URL with the port spelled out.
    with_port = URL.replace("herald.example", "herald.example:443")
    assert check(URL, FORM, {"X-Twilio-Signature": sign(TOKEN, with_port, FORM)})


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_a_shared_key_signature_verifies_with_the_algorithm_it_names(algorithm):
    digest = hashlib.sha256 if algorithm == "HMAC_SHA256" else hashlib.sha1
    headers = {"X-Twilio-Signature": sign(SHARED, URL, FORM, digest),
               "X-Twilio-Webhooks-Signature-Settings": f"key=webhooks_sharedkey_01,algorithm={algorithm}"}

    assert check(URL, FORM, headers)
    assert not check(URL, FORM, headers, shared=None)  # Herald has no shared key configured
    assert not check(URL, FORM, {**headers, "X-Twilio-Signature": sign(TOKEN, URL, FORM, digest)})


def test_a_json_body_is_verified_by_its_body_sha256():
    body = json.dumps({"MessageSid": "SM1", "MessageStatus": "delivered"})
    url = f"{URL}&{urlencode({'bodySHA256': hashlib.sha256(body.encode()).hexdigest()})}"
    headers = {"X-Twilio-Signature": sign(TOKEN, url, {})}

    assert check(url, body, headers)
    assert not check(url, body.replace("delivered", "failed"), headers)


@pytest.mark.parametrize("tamper", ["no signature", "wrong token", "other url", "other form",
                                    "unknown algorithm"])
def test_tampered_requests_are_refused(tamper):
    headers = {"X-Twilio-Signature": sign(TOKEN, URL, FORM)}
    url, form = URL, dict(FORM)
    if tamper == "no signature":
        headers = {}
    elif tamper == "wrong token":
        headers = {"X-Twilio-Signature": sign("other", URL, FORM)}
    elif tamper == "other url":
        url = URL.replace("s-1", "s-9")
    elif tamper == "other form":
        form["MessageStatus"] = "failed"
    else:
        headers["X-Twilio-Webhooks-Signature-Settings"] = "key=k,algorithm=HMAC_MD5"

    assert not check(url, form, headers)
