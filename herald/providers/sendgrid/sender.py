"""SendGrid: email through the official sendgrid SDK, pointed at an endpoint by configuration only."""

from __future__ import annotations

import email.utils
import json
from typing import Any, Sequence

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail, Personalization, To

from herald.contracts import PROVIDER_BY_CHANNEL, Channel
from herald.providers.base import (ErrorClass, Outgoing, PooledSender, ProviderError, SendResult,
                                   classify_failure)
from herald.providers.sendgrid.errors import classify, recipient_of, wait_s
from herald.providers.sendgrid.limits import MAX_PERSONALIZATIONS

SENDGRID_HOST = "https://api.sendgrid.com"
INVALID_ADDRESS = "INVALID_ADDRESS"
"""Herald's code for an address refused before the request: one that does not read back as itself
(RFC 5322 addr-spec through `email.utils.parseaddr`, as the SDK's helper reads it)."""


def valid_address(address: str) -> bool:
    """An address the SDK's helper would pass on unchanged: a bare addr-spec with an @, no
    whitespace, no display name. The helper parses `To("x")` with `parseaddr`, which rewrites
    some strings into another address and turns others into None, so Herald checks first and
    then sets the address without parsing (`_to`)."""
    return ("@" in address and not any(char.isspace() for char in address)
            and email.utils.parseaddr(address) == ("", address))


def _to(address: str) -> To:
    """A To with exactly `address`: the `email` setter takes it as is, the constructor parses."""
    recipient = To()
    recipient.email = address
    return recipient


def build_mail(items: Sequence[Outgoing], from_email: str) -> Mail:
    """One mail for messages that share a notification and its content, a personalization per
    recipient; the ids go in each personalization's custom_args, which SendGrid echoes in every
    webhook event for that recipient."""
    first = items[0]
    mail = Mail(from_email=from_email, subject=first.title, plain_text_content=first.content,
                html_content=first.html)
    for index, item in enumerate(items):
        personalization = Personalization()
        personalization.add_to(_to(item.address))
        personalization.add_custom_arg(CustomArg("notification_id", item.notification_id))
        personalization.add_custom_arg(CustomArg("span_id", item.span_id))
        mail.add_personalization(personalization, index=index)  # default index 0 would reverse
    return mail


def _same_mail(item: Outgoing) -> tuple[str, str, str, str | None]:
    return item.notification_id, item.title, item.content, item.html


def _errors(error: HTTPError) -> list[dict[str, Any]]:
    """The `errors` entries of a v3 error body ({"errors": [{"message", "field", "help"}]})."""
    try:
        entries = json.loads(error.body)["errors"]
    except (ValueError, KeyError, TypeError):
        return []
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def _provider_error(error: HTTPError) -> ProviderError:
    messages = [str(entry.get("message")) for entry in _errors(error)]
    return ProviderError(str(error.status_code), "; ".join(messages) or str(error.reason),
                         classify(error.status_code), retry_after_s=wait_s(error.headers))


def _recipient_errors(error: HTTPError, count: int) -> dict[int, str] | None:
    """{personalization index: message} when every entry of a 400 names one recipient of the
    request (`personalizations.N.to.M.email`): those recipients fail and the rest can be resent.
    None when any entry is about the request itself."""
    if error.status_code != 400:
        return None
    bad: dict[int, str] = {}
    for entry in _errors(error):
        index = recipient_of(entry.get("field"))
        if index is None or index >= count:
            return None
        bad[index] = str(entry.get("message"))
    return bad or None


class SendGridSender(PooledSender):
    """A bulk send (one notification to many users) goes out as few requests as SendGrid allows:
    one mail/send per 1,000 recipients of the same content; requests run concurrently.

    One bad recipient does not fail the others: an address that is not one fails alone before
    the request, and a 400 naming recipients (`errors[].field` = `personalizations.N.to.0.email`)
    fails those and resends the request without them (nothing was sent: SendGrid refuses the
    whole request), so each of the others is sent once."""

    provider = PROVIDER_BY_CHANNEL[Channel.EMAIL]

    def __init__(self, api_key: str, from_email: str, endpoint: str | None = None,
                 max_workers: int = 32, *, timeout_s: float = 30.0,
                 max_per_s: float | None = None) -> None:
        super().__init__(max_workers, max_per_s)
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

    def _attempt(self, items: list[Outgoing]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        pending = []
        for index, item in enumerate(items):
            if valid_address(item.address):
                pending.append(index)
            else:
                results[index] = SendResult.failed(item, ProviderError(
                    INVALID_ADDRESS, "not an email address SendGrid can take as it is",
                    ErrorClass.UNREACHABLE))
        while pending:  # each round either ends or drops at least one recipient
            batch = [items[index] for index in pending]
            try:
                ids = self._request(batch)
            except Exception as error:  # the contract: a per-message failure is a result
                bad = _recipient_errors(error, len(batch)) if isinstance(error, HTTPError) else None
                if bad is None:
                    failure = classify_failure(error, self._classify)
                    results.update((index, SendResult.failed(items[index], failure))
                                   for index in pending)
                    break
                for position, message in bad.items():
                    results[pending[position]] = SendResult.failed(batch[position], ProviderError(
                        str(error.status_code), message, ErrorClass.UNREACHABLE))
                pending = [index for position, index in enumerate(pending) if position not in bad]
            else:
                results.update((index, SendResult.sent(items[index], provider_id))
                               for index, provider_id in zip(pending, ids, strict=True))
                break
        return [results[index] for index in range(len(items))]

    def _send(self, items: list[Outgoing]) -> list[str | None]:
        """One mail/send carrying `items`; SendGrid's X-Message-Id is all of theirs."""
        response = self._api.client.mail.send.post(
            request_body=build_mail(items, self._from).get(), timeout=self._timeout_s)
        return [response.headers.get("X-Message-Id")] * len(items)

    def _classify(self, error: Exception) -> ProviderError | None:
        return _provider_error(error) if isinstance(error, HTTPError) else None
