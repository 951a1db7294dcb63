"""Provider webhooks at Herald's edge: Twilio status callbacks (`POST /v1/callbacks/twilio`),
Twilio incoming messages (`POST /v1/callbacks/twilio/incoming`, where STOP replies arrive) and
SendGrid's signed Event Webhook (`POST /v1/callbacks/sendgrid`).

HTTP only: each provider's package verifies its signature and reads its payload
(herald/providers/twilio/status_callbacks.py, herald/providers/sendgrid/event_webhook.py). A bad
or missing signature is 401 and nothing is published. What a verified request says becomes
`herald.callback_events.DeliveryCallback`s on the callbacks topic, and the provider hears 2xx
only once Pub/Sub has acknowledged them. SendGrid retries a batch for up to 24 h until it gets a
2xx, so a 503 here delays its events rather than losing them, and the repeats carry the same
callback_id for the pipeline to drop. Twilio does not retry: a status it posts while Pub/Sub is
down is lost (logged), and the delivery keeps the state its send result gave it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Sequence

import flask
from google.cloud import pubsub_v1

from herald.callback_events import DeliveryCallback
from herald.contracts import ContractError, utc_now_iso
from herald.providers.sendgrid import event_webhook
from herald.providers.twilio import status_callbacks
from herald.settings import Settings
from ingest_function.outbox import PUBLISH_ERRORS, Message, publish

TWILIO_PATH = "/v1/callbacks/twilio"
TWILIO_INCOMING_PATH = "/v1/callbacks/twilio/incoming"
SENDGRID_PATH = "/v1/callbacks/sendgrid"
MAX_CALLBACK_BYTES = 1024 * 1024
"""SendGrid posts a batch once it reaches 768 KB (or every 30 s); Twilio's forms are tiny."""

log = logging.getLogger("herald.ingest.webhooks")

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


def _twilio_fields(request: flask.Request, settings: Settings
                   ) -> tuple[Mapping[str, Any] | None, flask.Response | None]:
    """A Twilio request's verified fields (its form, or its JSON object), or the refusal."""
    refused = _refusal(request)
    if refused is not None:
        return None, refused
    signed_params: Mapping[str, str] | str = (
        request.get_data(as_text=True) if request.is_json else request.form)
    if not status_callbacks.signed(_twilio_signed_url(request, settings), signed_params,
                                   request.headers, auth_token=settings.twilio_auth_token,
                                   shared_key=settings.twilio_webhook_shared_key):
        return None, _error(401, status_callbacks.SIGNATURE_HEADER,
                            "missing or invalid Twilio signature")
    if not request.is_json:
        return request.form, None
    fields = request.get_json(silent=True)
    if not isinstance(fields, Mapping):
        return None, _error(400, "body", "must be a JSON object")
    return fields, None


def _twilio(read: Callable[[Mapping[str, Any], flask.Request, str], list[DeliveryCallback]]
            ) -> Handler:
    """An endpoint for one kind of Twilio webhook; 204 once its callbacks are published (or when
    it has none Herald records)."""
    def handle(request: flask.Request, settings: Settings,
               publisher: pubsub_v1.PublisherClient) -> flask.Response:
        fields, refused = _twilio_fields(request, settings)
        if refused is not None:
            return refused
        try:
            callbacks = read(fields, request, utc_now_iso())
        except ContractError as error:
            return _error(400, error.field, error.message)
        if callbacks and not _published(callbacks, settings, publisher):
            return _queue_unavailable()
        return flask.Response(status=204)
    return handle


twilio_status_callback = _twilio(
    lambda fields, request, received_at: status_callbacks.status_callback(
        fields, request.args, received_at))
twilio_incoming_message = _twilio(
    lambda fields, request, received_at: status_callbacks.incoming_message(fields, received_at))


def sendgrid_event_webhook(request: flask.Request, settings: Settings,
                           publisher: pubsub_v1.PublisherClient) -> flask.Response:
    """A batch of email events; 200 with how many callbacks were published, and how many events
    were ignored (by type) or invalid (logged): a 4xx would make SendGrid resend the whole batch
    for a day."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    body = request.get_data()
    try:
        signed = event_webhook.signed(settings.sendgrid_webhook_public_key, body,
                                      request.headers.get)
    except ValueError as error:
        # 503, not 401: SendGrid keeps retrying until the key is configured, so nothing is lost.
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is missing or invalid: %s", error)
        return _error(503, "configuration", "SendGrid webhook verification is not configured")
    if not signed:
        return _error(401, event_webhook.SIGNATURE_HEADER, "missing or invalid SendGrid signature")
    try:
        batch = event_webhook.read_events(event_webhook.parse_body(body))
    except ContractError as error:
        return _error(400, error.field, error.message)
    if not _published(batch.callbacks, settings, publisher):
        return _queue_unavailable()
    return flask.Response(json.dumps({"published": len(batch.callbacks),
                                      "ignored": dict(batch.ignored), "invalid": batch.invalid}),
                          status=200, mimetype="application/json")


ROUTES: Mapping[str, Handler] = {
    TWILIO_PATH: twilio_status_callback,
    TWILIO_INCOMING_PATH: twilio_incoming_message,
    SENDGRID_PATH: sendgrid_event_webhook,
}
"""Paths the entry point hands to this module."""
