"""The ingest benchmark's peer: the HTTP function a team would write without Herald.

It authenticates the same API keys, validates the same contract (`herald.contracts.parse_request`)
and publishes the same envelope to the same topics, with the same publisher batching, and answers
202 once Pub/Sub acknowledged. No idempotency record, no outbox, no circuit breaker, no template
check: what Herald's edge does beyond this is what the ingest / peer ratio prices.

`herald bench` starts it exactly like the ingest function (functions-framework without --debug,
so gunicorn with the same WORKERS/THREADS) and drives it with the same requests:

    functions-framework --target=notifications --source=bench/peer_function.py --port=8081
"""

from __future__ import annotations

import json
from functools import lru_cache

import flask
import functions_framework
from google.cloud import pubsub_v1

from herald.contracts import ContractError, new_envelope, parse_request
from herald.settings import Settings
from ingest_function.outbox import PUBLISH_BATCH, PUBLISH_ERRORS

PUBLISH_TIMEOUT_S = 10.0


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def _publisher() -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient(batch_settings=PUBLISH_BATCH)


def _answer(status: int, body: dict) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


@functions_framework.http
def notifications(request: flask.Request) -> flask.Response:
    """POST /v1/notifications: 401 without a known API key, 400 on a contract error, 503 if
    Pub/Sub refused or did not answer in time, else 202 with the notificationId and traceId."""
    if request.path == "/healthz":
        return _answer(200, {"ok": True})
    settings = _settings()
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    sender = settings.api_keys.get(key.strip()) if scheme.lower() == "bearer" else None
    if sender is None:
        return _answer(401, {"error": {"field": "Authorization", "message": "unknown API key"}})
    try:
        body = json.loads(request.get_data(cache=False))
        notification = parse_request(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _answer(400, {"error": {"field": "body", "message": f"is not JSON: {error}"}})
    except ContractError as error:
        return _answer(400, {"error": {"field": error.field, "message": error.message}})
    envelope = new_envelope(notification, sender)
    data, attributes = envelope.to_pubsub()
    topic = settings.topic_path(settings.requests_topic_for(notification.priority))
    try:
        _publisher().publish(topic, data, **attributes).result(timeout=PUBLISH_TIMEOUT_S)
    except PUBLISH_ERRORS as error:
        return _answer(503, {"error": {"field": "body", "message": f"not published: {error}"}})
    return _answer(202, {"notificationId": notification.notification_id,
                         "traceId": envelope.trace_id, "status": "accepted"})
