"""`GET /v1/notifications/{notificationId}`: what happened to each delivery of a sender's request.

Authenticated with the sender's API key, like the POST; the request is looked up by (sender,
notificationId), so another sender's notificationId is a 404 exactly like an unknown one. The
answer comes from the status store the pipelines keep (herald/status.py: one Firestore document
read and one batched read of its deliveries' reported stages), in milliseconds:

    {"notificationId": "n-1", "acceptedAt": "...Z", "deliveries": [{"deliveryId": <span id>,
     "channel": "push", "platform": "android", "status": "delivered", "reason": null,
     "providerCode": null, "timeline": [{"stage": "sent", "at": "...Z"},
                                        {"stage": "delivered", "at": "...Z"}]}]}

A request just accepted has no deliveries recorded yet: 404 until its first delivery ends.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import unquote

import flask
from google.api_core.exceptions import GoogleAPIError
from google.cloud import firestore

from herald.settings import Settings
from herald.status import StatusStore
from ingest_function.webhooks import _error

PREFIX = "/v1/notifications/"


def notification_id(path: str) -> str | None:
    """The notificationId of a status path, None for any other path."""
    if not path.startswith(PREFIX):
        return None
    rest = unquote(path[len(PREFIX):])
    return rest or None


def lookup(request: flask.Request, settings: Settings, db: firestore.Client,
           sender: str | None) -> flask.Response:
    """The status of the sender's request named in the path."""
    if sender is None:
        return _error(401, "Authorization", "a valid `Authorization: Bearer <api key>` is required")
    wanted = notification_id(request.path)
    if wanted is None:
        return _error(400, "notificationId", "is required: GET /v1/notifications/{notificationId}")
    try:
        found = StatusStore(db, timedelta(seconds=settings.status_ttl_s)).lookup(sender, wanted)
    except GoogleAPIError as error:
        return _error(503, "status", f"the status store is unavailable; retry later ({error})")
    if found is None:
        return _error(404, "notificationId", "no such notification from this sender (or no "
                                             "delivery of it has ended yet)")
    return flask.Response(json.dumps(found), status=200, mimetype="application/json")
