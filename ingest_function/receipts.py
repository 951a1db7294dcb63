"""`POST /v1/receipts`: an app reports that a push Herald sent was received or opened.

Body `{"token": <the push's data["receipt"]>, "event": "received" | "opened", "at": <ISO-8601
with a zone>}`. No sender API key: the token is the credential (herald/receipts.py). A forged or
expired token is 401 and nothing is published; any other bad field is 400 naming it. A verified
receipt becomes a `DeliveryCallback` of provider fcm (FCM itself sends none, so on push every
callback is an app's receipt) on the callbacks topic, 204 once Pub/Sub acknowledged it; the
callbacks pipeline records `delivered` or `opened` on the token's delivery. Its callback id (and
so its event id) is the span and the status, never `at`: an app retrying, or reporting `opened`
before `received`, changes nothing it should not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import flask
from google.cloud import pubsub_v1

from herald.callback_events import callback
from herald.contracts import PROVIDER_BY_CHANNEL, Channel, ContractError
from herald.receipts import ReceiptError, ReceiptEvent
from herald.settings import Settings
from ingest_function.webhooks import _error, _published, _queue_unavailable, _refusal

PATH = "/v1/receipts"
MAX_TOKEN_CHARS = 256
"""Longer than any token Herald makes; a bigger one is not read at all."""


def _fields(body: Any) -> tuple[str, ReceiptEvent, str]:
    """token, event, at from the body; ContractError names the first bad field."""
    if not isinstance(body, Mapping):
        raise ContractError("body", "must be a JSON object")
    token = body.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise ContractError("token", "must be the push's receipt token (a string)")
    try:
        event = ReceiptEvent(body.get("event"))
    except ValueError:
        raise ContractError("event", "must be one of received, opened") from None
    at = body.get("at")
    try:
        if not isinstance(at, str) or datetime.fromisoformat(at).tzinfo is None:
            raise ValueError
    except ValueError:
        raise ContractError("at", "must be an ISO-8601 timestamp with a time zone") from None
    return token, event, at


def receive(request: flask.Request, settings: Settings,
            publisher: pubsub_v1.PublisherClient) -> flask.Response:
    """Verify the receipt and publish it to the callbacks topic."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        token, event, at = _fields(request.get_json(silent=True))
    except ContractError as error:
        return _error(400, error.field, error.message)
    try:
        span_id = settings.receipts.verify(token)
    except ReceiptError as error:
        return _error(401, "token", str(error))
    report = callback(PROVIDER_BY_CHANNEL[Channel.PUSH], event.status, at, (span_id,),
                      span_id=span_id)
    if not _published([report], settings, publisher):
        return _queue_unavailable()
    return flask.Response(status=204)


ROUTES: Mapping[str, Any] = {PATH: receive}
"""Paths the entry point hands to this module."""
