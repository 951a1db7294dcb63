"""Push through firebase-admin's own send path, pointed at an endpoint by configuration only.

firebase-admin has no public FCM endpoint option, so `_route_service` reaches into the app's
messaging service. That is private API, which is why pyproject pins firebase-admin==7.7.0 and
providers_test.py sends through it end to end.
"""

from __future__ import annotations

from typing import Sequence

import firebase_admin
from firebase_admin import exceptions, messaging
from google.auth.credentials import AnonymousCredentials
from requests.adapters import HTTPAdapter

from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Platform, Priority
from herald.providers.base import (Outgoing, ProviderError, SendResult, classify_failure,
                                   is_transient_status, retry_after)

BATCH_LIMIT = 500
"""The most messages `messaging.send_each` takes per call."""

_FCM_ERROR_CODES: tuple[tuple[type[exceptions.FirebaseError], str], ...] = (
    (messaging.UnregisteredError, "UNREGISTERED"),
    (messaging.SenderIdMismatchError, "SENDER_ID_MISMATCH"),
    (messaging.QuotaExceededError, "QUOTA_EXCEEDED"),
    (messaging.ThirdPartyAuthError, "THIRD_PARTY_AUTH_ERROR"),
)
"""FCM's own error codes, which firebase-admin turns into classes; other errors keep the
canonical gRPC code the SDK gives them (INVALID_ARGUMENT, PERMISSION_DENIED, ...)."""

_TRANSIENT_CODES = frozenset({exceptions.RESOURCE_EXHAUSTED, exceptions.UNAVAILABLE,
                              exceptions.INTERNAL, exceptions.DEADLINE_EXCEEDED})
"""Includes timeouts and connection errors, which firebase-admin reports as DEADLINE_EXCEEDED
and UNAVAILABLE."""


def build_message(item: Outgoing) -> messaging.Message:
    """An FCM message with the platform blocks the device needs (all three when unknown), urgent
    only for high priority, and the ids in `data` so the device and the sandbox can report them.

    The token is assigned after construction: 7.7 deprecates `Message(token=...)` in favour of
    `fid=`, a Firebase Installation ID, which a registration token is not. Assigning the attribute
    the encoder reads avoids the warning without `warnings.catch_warnings()`, which is not
    thread-safe and the pipeline sends from several threads.
    """
    high = item.priority is Priority.HIGH

    def targets(platform: Platform) -> bool:
        return item.platform is None or item.platform is platform

    message = messaging.Message(
        notification=messaging.Notification(title=item.title, body=item.content),
        data={**item.data, "notification_id": item.notification_id, "span_id": item.span_id},
        android=(messaging.AndroidConfig(priority="high" if high else "normal")
                 if targets(Platform.ANDROID) else None),
        apns=(messaging.APNSConfig(headers={"apns-priority": "10" if high else "5"})
              if targets(Platform.IOS) else None),
        webpush=(messaging.WebpushConfig(headers={"Urgency": "high" if high else "normal"})
                 if targets(Platform.WEB) else None),
    )
    message.token = item.address
    return message


def _route_service(app: firebase_admin.App, endpoint: str | None) -> messaging._MessagingService:
    """The app's messaging service, sending to `endpoint` when given, with a pool per batch.

    Private firebase-admin 7.7.0 internals: `_fcm_url` is the URL `send_each` posts every message
    to, `_client.session` the requests session it posts with. The SDK's pool (100 connections,
    and only for fcm.googleapis.com) is smaller than a `send_each` batch, which runs a thread per
    message, so a pool of BATCH_LIMIT is mounted on the URL. It has no retries: the SDK's would
    re-POST after a read timeout (a hidden duplicate push) and wait out 429s itself; Herald's
    RetryPolicy retries instead, with Retry-After, backoff and a deadline it can see.
    """
    service = messaging._get_messaging_service(app)
    if not (hasattr(service, "_fcm_url") and hasattr(service, "_client")):
        raise RuntimeError(f"firebase-admin {firebase_admin.__version__} moved its FCM URL; "
                           "herald.providers.fcm needs firebase-admin==7.7.0")
    if endpoint:
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"
    session = service._client.session
    session.mount(service._fcm_url, HTTPAdapter(pool_maxsize=BATCH_LIMIT, max_retries=0))
    return service


def _classify(error: Exception) -> ProviderError | None:
    if not isinstance(error, exceptions.FirebaseError):
        return None
    code = next((name for kind, name in _FCM_ERROR_CODES if isinstance(error, kind)), error.code)
    response = error.http_response
    status = response.status_code if response is not None else None
    return ProviderError(code, str(error),
                         transient=error.code in _TRANSIENT_CODES or is_transient_status(status),
                         retry_after_s=retry_after(response.headers if response is not None else None))


class FcmSender:
    """Sends push notifications with `messaging.send_each`, which already runs a thread per
    message, so this sender has no pool of its own."""

    provider = PROVIDER_BY_CHANNEL[Channel.PUSH]

    def __init__(self, project_id: str, endpoint: str | None = None, app_name: str = "herald",
                 *, timeout_s: float = 30.0) -> None:
        # With an endpoint there is no Google to authenticate to; without one, None makes
        # firebase-admin use Application Default Credentials. initialize_app accepts google-auth
        # credentials as they are (it wraps them itself), so no credentials.Base subclass is needed.
        credential = AnonymousCredentials() if endpoint else None
        self._app = firebase_admin.initialize_app(
            credential, {"projectId": project_id, "httpTimeout": timeout_s}, name=app_name)
        try:
            self._service = _route_service(self._app, endpoint)
        except Exception:
            firebase_admin.delete_app(self._app)  # or the name stays taken for the next attempt
            raise

    def send(self, batch: Sequence[Outgoing]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        ready: list[tuple[int, messaging.Message]] = []
        for index, item in enumerate(batch):
            message = build_message(item)
            try:
                # send_each encodes a whole batch up front and raises for one bad message, so
                # bad ones are found here and fail alone.
                self._service.encode_message(message)
            except ValueError as error:
                results[index] = SendResult.failed(item, classify_failure(error, _classify))
            else:
                ready.append((index, message))
        for start in range(0, len(ready), BATCH_LIMIT):
            chunk = ready[start:start + BATCH_LIMIT]
            sent = self._send_chunk([batch[index] for index, _ in chunk],
                                    [message for _, message in chunk])
            results.update(zip((index for index, _ in chunk), sent))
        return [results[index] for index in range(len(batch))]

    def _send_chunk(self, items: list[Outgoing],
                    messages: list[messaging.Message]) -> list[SendResult]:
        try:
            responses = messaging.send_each(messages, app=self._app).responses
        except exceptions.FirebaseError as error:  # the whole call failed (UnknownError)
            failure = classify_failure(error, _classify)
            return [SendResult.failed(item, failure) for item in items]
        return [SendResult.sent(item, response.message_id) if response.success
                else SendResult.failed(item, classify_failure(response.exception, _classify))
                for item, response in zip(items, responses)]

    def close(self) -> None:
        firebase_admin.delete_app(self._app)
