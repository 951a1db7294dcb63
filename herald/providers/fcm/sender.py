"""FCM: push through firebase-admin's own send path, pointed at an endpoint by configuration only.

firebase-admin has no public FCM endpoint option, so `_route_service` reaches into the app's
messaging service. That is private API, which is why pyproject pins firebase-admin==7.7.0 and
providers_test.py sends through it end to end.
"""

from __future__ import annotations

import firebase_admin
from firebase_admin import exceptions, messaging
from google.auth.credentials import AnonymousCredentials
from requests.adapters import HTTPAdapter

from herald.contracts import PROVIDER_BY_CHANNEL, Channel, Platform, Priority
from herald.providers.base import Outgoing, PooledSender, ProviderError, retry_after
from herald.providers.fcm.errors import classify_body, decode, fcm_error_code
from herald.providers.fcm.labels import AnalyticsLabels
from herald.providers.fcm.limits import RECEIPT_DATA_KEY
from herald.receipts import ReceiptKey

QUOTA_EXCEEDED_MIN_WAIT_S = 60.0
"""FCM asks for backoff of at least a minute after QUOTA_EXCEEDED when it sends no Retry-After
(https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode, QUOTA_EXCEEDED;
https://firebase.google.com/docs/cloud-messaging/scale-fcm#throttling-and-quotas)."""


class _NoAuth(AnonymousCredentials):
    """No credentials, for an endpoint that takes any (the sandbox): nothing to refresh either,
    so a 401 it answers reaches Herald as FCM's own error (after google-auth's one retry with
    "refreshed" credentials) instead of as AnonymousCredentials' refusal to refresh."""

    def refresh(self, request: object) -> None:
        pass


def build_message(item: Outgoing, labels: AnalyticsLabels = AnalyticsLabels(),
                  receipts: ReceiptKey | None = None) -> messaging.Message:
    """An FCM message with the platform blocks the device needs (all three when unknown), urgent
    only for high priority, the ids in `data` so the device and the sandbox can report them (and,
    with `receipts`, the receipt token the app posts back, herald/receipts.py), and the analytics
    label `labels` gives its category and template (`fcm_options.analytics_label`, which FCM's
    reports, Data API and BigQuery export carry).

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
        data={**item.data, "notification_id": item.notification_id, "span_id": item.span_id,
              **({RECEIPT_DATA_KEY: receipts.token(item.span_id)} if receipts else {})},
        # the keys of herald.providers.fcm.limits.HERALD_DATA_KEYS, which the edge counts
        android=(messaging.AndroidConfig(priority="high" if high else "normal")
                 if targets(Platform.ANDROID) else None),
        apns=(messaging.APNSConfig(headers={"apns-priority": "10" if high else "5"})
              if targets(Platform.IOS) else None),
        webpush=(messaging.WebpushConfig(headers={"Urgency": "high" if high else "normal"})
                 if targets(Platform.WEB) else None),
        fcm_options=messaging.FCMOptions(analytics_label=labels.label(item.category, item.template)),
    )
    message.token = item.address
    return message


def _route_service(app: firebase_admin.App, endpoint: str | None, connections: int) -> None:
    """Point the app's messaging service at `endpoint` when given, with `connections` pooled.

    Private firebase-admin 7.7.0 internals: `_fcm_url` is the URL `messaging.send` posts to,
    `_client.session` the requests session it posts with. The SDK's pool is mounted only for
    fcm.googleapis.com, so one sized to the sender's threads is mounted on the URL. It has no
    retries: the SDK's would re-POST after a read timeout (a hidden duplicate push) and wait out
    429s itself; Herald's RetryPolicy retries instead, with Retry-After, backoff and a deadline it
    can see.
    """
    service = messaging._get_messaging_service(app)
    if not (hasattr(service, "_fcm_url") and hasattr(service, "_client")):
        raise RuntimeError(f"firebase-admin {firebase_admin.__version__} moved its FCM URL; "
                           "herald.providers.fcm.sender needs firebase-admin==7.7.0")
    if endpoint:
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"
    session = service._client.session
    session.mount(service._fcm_url, HTTPAdapter(pool_maxsize=connections, max_retries=0))


def _classify(error: Exception) -> ProviderError | None:
    """FCM's own errorCode when the answer has one, else the canonical status firebase-admin
    read (it reports its own timeouts and connection failures as DEADLINE_EXCEEDED and
    UNAVAILABLE, without a response), classified by herald/providers/fcm/errors.py."""
    if not isinstance(error, exceptions.FirebaseError):
        return None
    response = error.http_response
    status = response.status_code if response is not None else None
    body = decode(response.content) if response is not None else None
    code = (fcm_error_code(body) or error.code).upper()
    error_class = classify_body(code, status, body)
    wait = retry_after(response.headers if response is not None else None)
    if code == "QUOTA_EXCEEDED" and wait is None:
        wait = QUOTA_EXCEEDED_MIN_WAIT_S
    return ProviderError(code, str(error), error_class, retry_after_s=wait)


class FcmSender(PooledSender):
    """One `messaging.send` per push (FCM's HTTP v1 API has no batch send), run on the sender's
    pool like Twilio's and SendGrid's requests.

    Not `messaging.send_each`: it starts a thread per message on every call (the bench's profile
    saw over a thousand threads come and go in 10 s), and hands all results back only when the
    batch's slowest answer arrives, so every push's `sent_at` was that answer's time (the
    end-to-end test's latency check against the sandbox's ledger caught it).
    """

    provider = PROVIDER_BY_CHANNEL[Channel.PUSH]

    def __init__(self, project_id: str, endpoint: str | None = None, app_name: str = "herald",
                 max_workers: int = 64, *, timeout_s: float = 30.0,
                 max_per_s: float | None = None,
                 labels: AnalyticsLabels = AnalyticsLabels(),
                 receipts: ReceiptKey | None = None) -> None:
        super().__init__(max_workers, max_per_s)
        self._labels = labels
        self._receipts = receipts
        # With an endpoint there is no Google to authenticate to; without one, None makes
        # firebase-admin use Application Default Credentials. initialize_app accepts google-auth
        # credentials as they are (it wraps them itself), so no credentials.Base subclass is needed.
        credential = _NoAuth() if endpoint else None
        self._app = firebase_admin.initialize_app(
            credential, {"projectId": project_id, "httpTimeout": timeout_s}, name=app_name)
        try:
            _route_service(self._app, endpoint, max_workers)
        except Exception:
            firebase_admin.delete_app(self._app)  # or the name stays taken for the next attempt
            raise

    def _send(self, items: list[Outgoing]) -> list[str | None]:
        (item,) = items
        return [messaging.send(build_message(item, self._labels, self._receipts), app=self._app)]

    def _classify(self, error: Exception) -> ProviderError | None:
        return _classify(error)

    def close(self) -> None:
        super().close()
        firebase_admin.delete_app(self._app)
