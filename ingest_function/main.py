"""Herald's HTTP edge: `POST /v1/notifications` validates a sender's request and publishes it;
the registry API (`/v1/users/...`, `/v1/templates/...`, registry.py) and the provider callbacks
(callbacks.py) share the function, described at `GET /openapi.json` (openapi.py).

Deployed as a Cloud Function (functions-framework), run locally by `herald local up`:
    functions-framework --target=notifications --source=ingest_function/main.py --port=8080

A request is answered 202 only once it is stored: acknowledged by Pub/Sub or, when Pub/Sub does not
answer within HERALD_PUBLISH_TIMEOUT_S, written to the Firestore outbox (`outbox.py`) that
`replay_outbox` republishes. After a few failed or slow publishes a circuit breaker (`breaker.py`)
sends requests to the outbox without waiting for Pub/Sub, until a background probe publishes
again. A repeat of a request (same Idempotency-Key, or same notificationId, from the same sender,
within 24 h) gets the original answer and is not published again (`idempotency.py`). Errors are
JSON `{"error": {"field": ..., "message": ...}}`.

Clients are created on first use and kept for the life of the loaded module. functions-framework's
`create_app` loads the source afresh, so each app has its own: a test that needs other endpoints
(Pub/Sub down, say) creates another app rather than resetting this one.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import lru_cache
from typing import Any

import flask
import functions_framework
from google.api_core.exceptions import GoogleAPIError
from google.api_core.retry import Retry
from google.cloud import firestore, pubsub_v1

from herald.clients import bigquery_client, firestore_client, state_client
from herald.contracts import (HEARTBEAT_ATTRIBUTE, MAX_BODY_BYTES, ContractError, Envelope,
                              NotificationRequest, new_envelope, parse_request)
from herald.reconcile import DEFAULT_GRACE_S, Reconciler
from herald.settings import Settings
from herald.templates import TemplateStore, check_request
from ingest_function import idempotency, openapi, receipts, registry, status, webhooks
from ingest_function.breaker import CircuitBreaker, CircuitOpen
from ingest_function.idempotency import Claim, Ledger, Receipt
from ingest_function.outbox import (DEFAULT_REPLAY_LIMIT, PUBLISH_BATCH, PUBLISH_ERRORS, Cancel,
                                    Message, Outbox, publish)

log = logging.getLogger("herald.ingest")


@lru_cache(maxsize=1)
def _settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def _publisher() -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient(batch_settings=PUBLISH_BATCH)


@lru_cache(maxsize=1)
def _breaker() -> CircuitBreaker:
    """Guards publishes to the requests topic; its probe is a heartbeat on that topic, which the
    pipeline drops and the reconciler acknowledges (publishing is all the function may do)."""
    settings = _settings()
    probe = Message(settings.topic_path(settings.requests_topic), b"{}", {HEARTBEAT_ATTRIBUTE: "1"})
    return CircuitBreaker(
        "Pub/Sub", failure_threshold=settings.breaker_failures,
        slow_call_s=settings.publish_slow_s, probe_interval_s=settings.breaker_probe_s,
        probe=lambda: publish(_publisher(), probe, settings.publish_timeout_s),
        probe_timeout_s=settings.publish_timeout_s)


@lru_cache(maxsize=1)
def _firestore() -> firestore.Client:
    return state_client(_settings())


def _firestore_call(settings: Settings) -> dict[str, Any]:
    """Retry and timeout for the edge's Firestore calls: a sender is waiting, so a Firestore that
    does not answer must fail in seconds, not after the client's default minute of retries."""
    timeout = settings.firestore_timeout_s
    return {"retry": Retry(initial=0.05, maximum=1.0, timeout=timeout), "timeout": timeout}


@lru_cache(maxsize=1)
def _ledger() -> Ledger:
    settings = _settings()
    # A claimant's worst case from its claim to its accept or release: the claim, the publish,
    # the outbox commit and the release, plus a second for clock differences between instances.
    lease = timedelta(seconds=settings.publish_timeout_s + 3 * settings.firestore_timeout_s + 1)
    return Ledger(_firestore(), lease, _firestore_call(settings))


@lru_cache(maxsize=1)
def _outbox() -> Outbox:
    return Outbox(_firestore(), _firestore_call(_settings()))


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


def _accepted(receipt: Receipt, *, replayed: bool = False) -> flask.Response:
    response = flask.Response(json.dumps({**receipt.to_json(), "status": "accepted"}), status=202,
                              mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def accept_notification(request: flask.Request) -> flask.Response:
    """Authenticate, validate, claim the idempotency key, store; the logic behind the entry point,
    importable for tests."""
    settings = _settings()
    sender = _authenticate(request, settings)
    if sender is None:
        return _error(401, "Authorization", "a valid `Authorization: Bearer <api key>` is required")
    try:
        body = _read_json(request)
        notification = parse_request(body)
        if notification.templated:
            _check_template(notification)
        key = idempotency.key_for(sender, request.headers.get(idempotency.HEADER), body)
    except _TooLarge:
        return _error(413, "body", f"must be at most {MAX_BODY_BYTES} bytes")
    except ContractError as error:
        return _error(400, error.field, error.message)
    envelope = new_envelope(notification, sender)
    if key is None:
        return _store(envelope, claim=None)
    try:
        claimed = _ledger().claim(key, idempotency.fingerprint(body), Receipt.of(envelope))
    except idempotency.KeyReused as error:
        return _error(409, error.key.field,
                      "was used in the last 24 h with a different body; use a new key")
    except idempotency.StillPending:
        return _error(503, key.field, "a request with this key is still being accepted; retry")
    except GoogleAPIError as error:
        # Availability first (an emergency alert must not wait for Firestore): accept without the
        # record; the pipeline's notificationId dedupe still stops a repeat from being sent twice.
        log.warning("idempotency store unavailable for trace %s, accepting without it: %s",
                    envelope.trace_id, error)
        return _store(envelope, claim=None)
    if isinstance(claimed, Receipt):
        return _accepted(claimed, replayed=True)
    return _store(claimed.receipt.stamp(envelope), claimed)


def _store(envelope: Envelope, claim: Claim | None) -> flask.Response:
    """Publish; if Pub/Sub does not ack in time or the breaker is open, write the outbox entry
    (with the claim's acceptance, in one commit). 202 only if one of them took it; else release
    the claim, 503."""
    settings = _settings()
    topic = settings.topic_path(settings.requests_topic_for(envelope.request.priority))
    message = Message.of(envelope, topic)
    try:
        _breaker().call(lambda: publish(_publisher(), message, settings.publish_timeout_s),
                        settings.publish_timeout_s)
    except (CircuitOpen, *PUBLISH_ERRORS) as publish_error:
        if isinstance(publish_error, CircuitOpen):
            log.info("Pub/Sub circuit open, trace %s goes to the outbox", envelope.trace_id)
        else:
            log.warning("publish failed for trace %s, writing it to the outbox: %s",
                        envelope.trace_id, publish_error)
        batch = _firestore().batch()
        if claim is not None:
            _ledger().stage_accept(batch, claim)
        try:
            _outbox().add(envelope, topic, publish_error, batch)
        except GoogleAPIError as error:
            log.error("outbox write failed for trace %s: %s", envelope.trace_id, error)
            if claim is not None:
                _ledger().release(claim)
            return _error(503, "queue", "the notification queue and its outbox are unavailable; "
                                        "retry later")
    else:
        if claim is not None:
            _ledger().accept(claim)
    _hold_if_scheduled(envelope, topic)
    return _accepted(Receipt.of(envelope))


@lru_cache(maxsize=1)
def _openapi() -> bytes:
    """The stored description (openapi.py, `herald schema --write`)."""
    return openapi.PATH.read_bytes()


@lru_cache(maxsize=1)
def _registry() -> registry.Registry:
    settings = _settings()
    return registry.Registry(firestore_client(settings), _publisher(), settings,
                             _firestore_call(settings), _templates())


@lru_cache(maxsize=1)
def _templates() -> TemplateStore:
    return TemplateStore(_firestore(), call=_firestore_call(_settings()))


def _check_template(notification: NotificationRequest) -> None:
    """A templated request's template must exist and get every variable it uses (ContractError).
    When Firestore cannot say, the request is accepted: the pipeline decides (template_error)."""
    try:
        template = _templates().get(notification.template_type)
    except GoogleAPIError as error:
        log.warning("template %r unreadable, leaving the check to the pipeline: %s",
                    notification.template_type, error)
        return
    check_request(template, notification)


def registry_request(request: flask.Request) -> flask.Response:
    """The registry API (registry.py) behind the same authentication and error shape."""
    sender = _authenticate(request, _settings())
    if sender is None:
        return _error(401, "Authorization", "a valid `Authorization: Bearer <api key>` is required")
    try:
        status, body = registry.dispatch(request, sender, _registry(), _read_json)
    except _TooLarge:
        return _error(413, "body", f"must be at most {MAX_BODY_BYTES} bytes")
    except ContractError as error:
        return _error(400, error.field, error.message)
    except registry.RegistryError as error:
        return _error(error.status, error.field, error.message)
    except GoogleAPIError as error:
        log.warning("registry request %s %s failed: %s", request.method, request.path, error)
        return _error(503, "firestore", "the user registry is unavailable; retry later")
    if body is None:
        return flask.Response(status=status)
    return flask.Response(json.dumps(body, default=str), status=status,
                          mimetype="application/json")


def _hold_if_scheduled(envelope: Envelope, topic: str) -> None:
    """A stored request whose sendTime is ahead is held in the outbox now, so a DELETE right
    after its 202 finds it. Best effort: the pipeline holds it too (pipelines/schedule.py)."""
    if (held_until := envelope.held_until) is None:
        return
    try:
        _outbox().hold(envelope, topic, held_until)
    except GoogleAPIError as error:
        log.warning("scheduled trace %s is left for the pipeline to hold: %s", envelope.trace_id,
                    error)


def cancel_notification(request: flask.Request, notification_id: str) -> flask.Response:
    """`DELETE /v1/notifications/{notificationId}`: cancel the sender's scheduled notification
    (see `Outbox.cancel`). 200 canceled (again, for a repeat); 409 already sent (its sendTime
    came, or it had none); 404 no notification of this sender with this id."""
    settings = _settings()
    sender = _authenticate(request, settings)
    if sender is None:
        return _error(401, "Authorization", "a valid `Authorization: Bearer <api key>` is required")
    try:
        outcome = _outbox().cancel(sender, notification_id)
        if outcome is Cancel.UNKNOWN and _ledger().accepted(
                idempotency.Key(sender, notification_id, "notificationId")):
            outcome = Cancel.ALREADY_SENT  # accepted without a sendTime ahead: sent at once
    except GoogleAPIError as error:
        log.error("cancel of %s failed: %s", notification_id, error)
        return _error(503, "queue", "the scheduled notifications are unavailable; retry later")
    if outcome is Cancel.UNKNOWN:
        return _error(404, "notificationId", "no notification with this id from this sender")
    if outcome is Cancel.ALREADY_SENT:
        return _error(409, "notificationId", "was already sent (its sendTime has come, or it had "
                                             "none); only a scheduled notification can be canceled")
    return flask.Response(json.dumps({"notificationId": notification_id, "status": "canceled"}),
                          status=200, mimetype="application/json")


@functions_framework.http
def notifications(request: flask.Request) -> flask.Response:
    """Entry point: routes the function's paths."""
    if request.path == "/healthz":
        return flask.Response('{"ok":true}', status=200, mimetype="application/json")
    if request.path == "/openapi.json":
        return flask.Response(_openapi(), status=200, mimetype="application/json")
    if registry.handles(request.path):
        return registry_request(request)
    callback_handler = {**webhooks.ROUTES, **receipts.ROUTES}.get(request.path.rstrip("/"))
    if callback_handler is not None:
        return callback_handler(request, _settings(), _publisher())
    if request.method == "GET" and status.notification_id(request.path) is not None:
        return status.lookup(request, _settings(), _firestore(), _authenticate(request, _settings()))
    one, _, notification_id = request.path.partition("/v1/notifications/")
    if not one and notification_id.strip("/") and request.method == "DELETE":
        return cancel_notification(request, notification_id.strip("/"))
    if request.path.rstrip("/") != "/v1/notifications":
        return _error(404, "path", f"no route {request.path}; use POST /v1/notifications")
    if request.method != "POST":
        return _error(405, "method", "use POST")
    return accept_notification(request)


@functions_framework.http
def replay_outbox(request: flask.Request) -> flask.Response:
    """Entry point for Cloud Scheduler (deploy it requiring authentication, invokable only by the
    scheduler's service account): republish pending outbox entries, at most `?limit=N` a pass,
    a pass every HERALD_OUTBOX_POLL_S for HERALD_OUTBOX_POLL_WINDOW_S (so a scheduled send due
    mid-minute is not a minute late; give the function a timeout above the window). Answers 503
    when Pub/Sub still refuses, so the scheduler records the run as failed."""
    limit = request.args.get("limit", DEFAULT_REPLAY_LIMIT, type=int)
    if limit < 1:
        return _error(400, "limit", "must be a positive integer")
    settings = _settings()
    report = _outbox().replay_for(_publisher(), settings.publish_timeout_s,
                                  settings.outbox_poll_window_s, settings.outbox_poll_s, limit)
    return flask.Response(json.dumps(report.to_json()), status=200 if report.error is None else 503,
                          mimetype="application/json")


@functions_framework.http
def reconcile(request: flask.Request) -> flask.Response:
    """Entry point for Cloud Scheduler (authenticated, like `replay_outbox`): one `herald
    reconcile` pass (herald/reconcile.py) over the audit subscription, checking requests published
    at least `?grace_s=S` seconds ago (default DEFAULT_GRACE_S). Answers the run's counts."""
    grace_s = request.args.get("grace_s", DEFAULT_GRACE_S, type=float)
    if grace_s < 0:
        return _error(400, "grace_s", "must be a number of seconds, 0 or more")
    settings = _settings()
    with pubsub_v1.SubscriberClient() as subscriber:
        report = Reconciler(settings, bigquery_client(settings), subscriber, _publisher(),
                            grace_s).run()
    return flask.Response(json.dumps({"finished": report.finished, "republished": report.republished,
                                      "parked": report.parked, "waiting": report.waiting}),
                          status=200, mimetype="application/json")
