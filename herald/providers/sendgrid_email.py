"""Email through the official sendgrid SDK, pointed at an endpoint by configuration only."""

from __future__ import annotations

import json
from typing import Sequence

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail, Personalization, To

from herald.contracts import PROVIDER_BY_CHANNEL, Channel
from herald.providers.base import (Outgoing, PooledSender, ProviderError, is_transient_status,
                                   retry_after)

SENDGRID_HOST = "https://api.sendgrid.com"
MAX_PERSONALIZATIONS = 1000
"""SendGrid's limit per mail/send request (the SDK does not check it)."""


def build_mail(items: Sequence[Outgoing], from_email: str) -> Mail:
    """One mail for messages that share a notification and its content, a personalization per
    recipient; the ids go in each personalization's custom_args, which SendGrid echoes in every
    webhook event for that recipient."""
    first = items[0]
    mail = Mail(from_email=from_email, subject=first.title, plain_text_content=first.content,
                html_content=first.html)
    for index, item in enumerate(items):
        personalization = Personalization()
        personalization.add_to(To(item.address))
        personalization.add_custom_arg(CustomArg("notification_id", item.notification_id))
        personalization.add_custom_arg(CustomArg("span_id", item.span_id))
        mail.add_personalization(personalization, index=index)  # default index 0 would reverse
    return mail


def _same_mail(item: Outgoing) -> tuple[str, str, str, str | None]:
    return item.notification_id, item.title, item.content, item.html


def _error_message(error: HTTPError) -> str:
    """SendGrid's `errors[].message` list when the body has one, else the HTTP reason."""
    try:
        return "; ".join(entry["message"] for entry in json.loads(error.body)["errors"])
    except (ValueError, KeyError, TypeError):
        return str(error.reason)


class SendGridSender(PooledSender):
    """A bulk send (one notification to many users) goes out as few requests as SendGrid allows:
    one mail/send per 1,000 recipients of the same content; requests run concurrently."""

    provider = PROVIDER_BY_CHANNEL[Channel.EMAIL]

    def __init__(self, api_key: str, from_email: str, endpoint: str | None = None,
                 max_workers: int = 32, *, timeout_s: float = 30.0) -> None:
        super().__init__(max_workers)
        host = endpoint.rstrip("/") if endpoint else SENDGRID_HOST
        self._api = SendGridAPIClient(api_key, host=host)
        # Every request shares this header dict, and the SDK adds Content-Type to it on first
        # use; set it now so no send mutates it while another thread is reading it.
        self._api.client.request_headers.setdefault("Content-Type", "application/json")
        self._from = from_email
        self._timeout_s = timeout_s

    def _group(self, batch: Sequence[Outgoing]) -> list[list[int]]:
        by_mail: dict[tuple[str, str, str], list[int]] = {}
        for index, item in enumerate(batch):
            by_mail.setdefault(_same_mail(item), []).append(index)
        return [indices[start:start + MAX_PERSONALIZATIONS]
                for indices in by_mail.values()
                for start in range(0, len(indices), MAX_PERSONALIZATIONS)]

    def _send(self, items: list[Outgoing]) -> list[str | None]:
        response = self._api.client.mail.send.post(
            request_body=build_mail(items, self._from).get(), timeout=self._timeout_s)
        return [response.headers.get("X-Message-Id")] * len(items)

    def _classify(self, error: Exception) -> ProviderError | None:
        if not isinstance(error, HTTPError):
            return None
        return ProviderError(str(error.status_code), _error_message(error),
                             transient=is_transient_status(error.status_code),
                             retry_after_s=retry_after(error.headers))
