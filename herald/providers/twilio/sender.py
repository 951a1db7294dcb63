"""Twilio: SMS through the official twilio SDK, pointed at an endpoint by configuration only."""

from __future__ import annotations

from urllib.parse import urlencode

from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from herald.contracts import PROVIDER_BY_CHANNEL, Channel
from herald.providers.base import Outgoing, PooledSender, ProviderError
from herald.providers.twilio.errors import classify
from herald.providers.twilio.limits import sms_body


class TwilioSender(PooledSender):
    """One `messages.create` per SMS (Twilio has no batch send), run concurrently."""

    provider = PROVIDER_BY_CHANNEL[Channel.SMS]

    def __init__(self, account_sid: str, auth_token: str, from_number: str,
                 endpoint: str | None = None, status_callback_base: str | None = None,
                 max_workers: int = 32, *, timeout_s: float = 30.0,
                 max_per_s: float | None = None) -> None:
        super().__init__(max_workers, max_per_s)
        http_client = TwilioHttpClient(timeout=timeout_s)
        self._client = Client(account_sid, auth_token, http_client=http_client)
        if endpoint:
            # `client.messages` is `client.api.account.messages`, whose URLs the Api domain
            # builds from its public `base_url`; `edge`/`region` only rewrite twilio.com names.
            self._client.api.base_url = endpoint.rstrip("/")
        # twilio pools only https:// and at min(32, cpus + 4) connections: size it to the pool.
        http_client.session.mount(self._client.api.base_url, HTTPAdapter(pool_maxsize=max_workers))
        self._from = from_number
        self._callback_base = status_callback_base.rstrip("/") if status_callback_base else None

    def _send(self, items: list[Outgoing]) -> list[str | None]:
        (item,) = items  # Twilio takes one message per request
        options = {}
        if self._callback_base:
            # The ids ride in the callback URL, so the delivery receipt names its delivery.
            ids = urlencode({"notification_id": item.notification_id, "span_id": item.span_id})
            options["status_callback"] = f"{self._callback_base}/v1/callbacks/twilio?{ids}"
        message = self._client.messages.create(
            to=item.address, from_=self._from, body=sms_body(item.title, item.content), **options)
        return [message.sid]

    def _classify(self, error: Exception) -> ProviderError | None:
        if isinstance(error, TwilioRestException):
            message = error.msg
        elif isinstance(error, TwilioServiceException):  # RFC 9457 errors of newer Twilio APIs
            message = f"{error.title}: {error.detail}"
        else:
            return None
        return ProviderError(str(error.code or error.status), message,
                             classify(error.code, error.status))
