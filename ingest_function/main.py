"""Herald's HTTP edge: `POST /v1/notifications` validates a sender's request and publishes it.

Deployed as a Cloud Function (functions-framework), run locally by `herald local up`:
    functions-framework --target=notifications --source=ingest_function/main.py --port=8080

A request is answered 202 only after Pub/Sub has acknowledged the publish, so every 202 is a
request the pipeline will see. Errors are JSON `{"error": {"field": ..., "message": ...}}`.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import flask
import functions_framework
from google.cloud import pubsub_v1

from herald.contracts import MAX_BODY_BYTES, ContractError, new_envelope, parse_request
from herald.settings import Settings

PUBLISH_TIMEOUT_S = 10.0
log = logging.getLogger("herald.ingest")


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def _publisher() -> pubsub_v1.PublisherClient:
    # A short batching window: senders wait on the publish, so latency matters more than batching.
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.005))


def _error(status: int, field: str, message: str) -> flask.Response:
    return flask.Response(json.dumps({"error": {"field": field, "message": message}}),
                          status=status, mimetype="application/json")


def _authenticate(request: flask.Request, settings: Settings) -> str | None:
    """The sender's client id for a valid `Authorization: Bearer <key>`, else None."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        return None
    return settings.api_keys.get(key.strip())


def _read_json(request: flask.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _TooLarge()
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise _TooLarge()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ContractError("body", f"is not valid JSON: {error}") from error


class _TooLarge(Exception):
    pass


def accept_notification(request: flask.Request) -> flask.Response:
    """Authenticate, validate, publish; the logic behind the entry point, importable for tests."""
    settings = _settings()
    sender = _authenticate(request, settings)
    if sender is None:
        return _error(401, "Authorization", "a valid `Authorization: Bearer <api key>` is required")
    try:
        notification = parse_request(_read_json(request))
    except _TooLarge:
        return _error(413, "body", f"must be at most {MAX_BODY_BYTES} bytes")
    except ContractError as error:
        return _error(400, error.field, error.message)
    envelope = new_envelope(notification, sender)
    data, attributes = envelope.to_pubsub()
    try:
        _publisher().publish(settings.topic_path(settings.requests_topic), data,
                             **attributes).result(timeout=PUBLISH_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any publish failure means "not accepted"
        log.error("publish failed for trace %s: %s", envelope.trace_id, error)
        return _error(503, "queue", "the notification queue is unavailable; retry later")
    body = {"notificationId": notification.notification_id, "traceId": envelope.trace_id,
            "status": "accepted"}
    return flask.Response(json.dumps(body), status=202, mimetype="application/json")


@functions_framework.http
def notifications(request: flask.Request) -> flask.Response:
    """Entry point: routes the function's paths."""
    if request.path == "/healthz":
        return flask.Response('{"ok":true}', status=200, mimetype="application/json")
    if request.path.rstrip("/") != "/v1/notifications":
        return _error(404, "path", f"no route {request.path}; use POST /v1/notifications")
    if request.method != "POST":
        return _error(405, "method", "use POST")
    return accept_notification(request)
