"""Provider delivery callbacks at Herald's edge: Twilio status callbacks
(`POST /v1/callbacks/twilio`) and SendGrid's signed Event Webhook (`POST /v1/callbacks/sendgrid`).

Each is verified with its provider SDK's own validator before anything in it is believed: a bad
or missing signature is 401 and nothing is published. A verified callback is normalised to
`herald.callbacks.DeliveryCallback` and published to the callbacks topic, and the provider hears
2xx only once Pub/Sub has acknowledged it. SendGrid retries a batch for up to 24 h until it gets a
2xx, so a 503 here delays its events rather than losing them, and the repeats carry the same
callback_id for the pipeline to drop. Twilio does not retry status callbacks: a status it posts
while Pub/Sub is down is lost (logged), and the delivery keeps the state its send result gave it.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import flask
from google.cloud import pubsub_v1
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from twilio.request_validator import RequestValidator

from herald.callbacks import DeliveryCallback, from_sendgrid, from_twilio
from herald.contracts import ContractError, utc_now_iso
from herald.settings import Settings
from ingest_function.outbox import PUBLISH_ERRORS, Message, publish

TWILIO_PATH = "/v1/callbacks/twilio"
SENDGRID_PATH = "/v1/callbacks/sendgrid"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_CALLBACK_BYTES = 1024 * 1024
"""SendGrid posts a batch once it reaches 768 KB (or every 30 s); Twilio's forms are tiny."""

log = logging.getLogger("herald.ingest.callbacks")

Handler = Callable[[flask.Request, Settings, pubsub_v1.PublisherClient], flask.Response]


def _error(status: int, field: str, message: str) -> flask.Response:
    """The edge's error shape, `{"error": {"field", "message"}}`."""
    return flask.Response(json.dumps({"error": {"field": field, "message": message}}),
                          status=status, mimetype="application/json")


def _refusal(request: flask.Request) -> flask.Response | None:
    """What every callback request is refused for before its signature is looked at."""
    if request.method != "POST":
        return _error(405, "method", "use POST")
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        return _error(413, "body", f"must be at most {MAX_CALLBACK_BYTES} bytes")
    return None


def _published(callbacks: Sequence[DeliveryCallback], settings: Settings,
               publisher: pubsub_v1.PublisherClient) -> bool:
    """Publish all of `callbacks`; True once Pub/Sub has acknowledged every one."""
    topic = settings.topic_path(settings.callbacks_topic)
    futures = [publish(publisher, Message(topic, *callback.to_pubsub()),
                       settings.publish_timeout_s) for callback in callbacks]
    try:
        for future in futures:
            future.result(timeout=settings.publish_timeout_s)
    except PUBLISH_ERRORS as error:
        log.error("publishing %d callbacks to %s failed: %s", len(callbacks), topic, error)
        return False
    return True


def _queue_unavailable() -> flask.Response:
    return _error(503, "queue", "the callbacks queue is unavailable; retry later")


def _twilio_signed_url(request: flask.Request, settings: Settings) -> str:
    """The URL Twilio signed: the public base the StatusCallback was built from (behind Google's
    front end the function sees plain http and its own host), the path, and the query string
    exactly as received, because Twilio signs the URL as it was given."""
    base = (settings.callback_base_url or request.host_url).rstrip("/")
    query = request.query_string.decode()
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def twilio_status_callback(request: flask.Request, settings: Settings,
                           publisher: pubsub_v1.PublisherClient) -> flask.Response:
    """One status change of one SMS; 204 once published (or when it is a status Herald does not
    track)."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    validator = RequestValidator(settings.twilio_auth_token)
    if not signature or not validator.validate(_twilio_signed_url(request, settings),
                                               request.form, signature):
        return _error(401, TWILIO_SIGNATURE_HEADER, "missing or invalid Twilio signature")
    try:
        callback = from_twilio(request.form, request.args, utc_now_iso())
    except ContractError as error:
        return _error(400, error.field, error.message)
    if callback is not None and not _published([callback], settings, publisher):
        return _queue_unavailable()
    return flask.Response(status=204)


@lru_cache(maxsize=4)
def _sendgrid_verifier(public_key: str | None) -> EventWebhook:
    """Parsed once per key; ValueError when no key is configured or it is not a public key."""
    if not public_key:
        raise ValueError("not set")
    return EventWebhook(public_key)


def _sendgrid_signed(verifier: EventWebhook, request: flask.Request, body: bytes) -> bool:
    signature = request.headers.get(EventWebhookHeader.SIGNATURE)
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
    if not signature or not timestamp:
        return False
    try:
        return verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except ValueError:  # a signature that is not base64, a body that is not UTF-8
        return False


def sendgrid_event_webhook(request: flask.Request, settings: Settings,
                           publisher: pubsub_v1.PublisherClient) -> flask.Response:
    """A batch of email events; 200 with how many were published and how many ignored (event
    types Herald does not track, and malformed events, which are logged: a 4xx would make
    SendGrid resend the whole batch for a day)."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        verifier = _sendgrid_verifier(settings.sendgrid_webhook_public_key)
    except ValueError as error:
        # 503, not 401: SendGrid keeps retrying until the key is configured, so nothing is lost.
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is missing or invalid: %s", error)
        return _error(503, "configuration", "SendGrid webhook verification is not configured")
    body = request.get_data()
    if not _sendgrid_signed(verifier, request, body):
        return _error(401, EventWebhookHeader.SIGNATURE, "missing or invalid SendGrid signature")
    try:
        events = json.loads(body)
    except json.JSONDecodeError as error:
        return _error(400, "body", f"is not valid JSON: {error}")
    if not isinstance(events, list):
        return _error(400, "body", "must be a JSON array of events")
    callbacks: list[DeliveryCallback] = []
    for index, event in enumerate(events):
        try:
            callback = from_sendgrid(event)
        except ContractError as error:
            log.warning("SendGrid event %d of %d ignored: %s", index, len(events), error)
            continue
        if callback is not None:
            callbacks.append(callback)
    if not _published(callbacks, settings, publisher):
        return _queue_unavailable()
    return flask.Response(json.dumps({"published": len(callbacks),
                                      "ignored": len(events) - len(callbacks)}),
                          status=200, mimetype="application/json")


ROUTES: Mapping[str, Handler] = {
    TWILIO_PATH: twilio_status_callback,
    SENDGRID_PATH: sendgrid_event_webhook,
}
"""Paths the entry point hands to this module."""
