"""Dead letters: what the pipelines could not finish, kept whole so it can be sent back through.

Two things end up here: a message the pipeline cannot parse (a poison message), and a delivery
whose provider retries ran out (or whose outcome a restart could not know). Each dead letter is
written twice, from the same `DeadLetter`:

- a row in the BigQuery `dead_letters` table (`DEAD_LETTER_FIELDS`): the permanent record that
  analysts and on-call query ("what is parked, and why");
- a message on the Pub/Sub dead-letter topic holding the original message's exact bytes and
  attributes plus the `dlq_*` attributes below: what `herald dlq replay` pulls from its `-hold`
  subscription and republishes once the cause is fixed.

A replayed delivery goes back to the requests topic scoped to its own span under the dead letter's
id (`herald.contracts.Scope`), so only that delivery is retried, and retried although its first
attempt still holds its claims; a replayed poison message goes back as it was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from herald.contracts import Envelope, Scope, utc_now_iso
from herald.events import Field, Reason, utf8_text

DEAD_LETTERS_TABLE = "dead_letters"
HOLD_SUFFIX = "-hold"
"""The dead-letter topic's subscription is `<topic>-hold`: it keeps dead letters for replay."""

PARKED_REASONS: tuple[Reason, ...] = (
    Reason.INVALID_MESSAGE, Reason.UNPROCESSABLE, Reason.RETRIES_EXHAUSTED, Reason.OUTCOME_UNKNOWN,
    Reason.PROVIDER_CONFIGURATION, Reason.UNRECONCILED, Reason.ROW_REJECTED)
"""Why an item is parked; all but row_rejected (a refused event row) can be replayed."""
REPLAYABLE_REASONS = tuple(reason for reason in PARKED_REASONS if reason is not Reason.ROW_REJECTED)

DEAD_LETTER_FIELDS: tuple[Field, ...] = (
    Field("dead_letter_id", "STRING", "REQUIRED",
          "Deterministic id (source topic, span or message digest, replay): one per parked item."),
    Field("dead_lettered_at", "TIMESTAMP", "REQUIRED", "When it was parked (partitioning column)."),
    Field("source_topic", "STRING", "REQUIRED",
          "The topic the message came from, and where `herald dlq replay` sends it back (for "
          "a row_rejected item, the table that refused the row)."),
    Field("reason", "STRING", "REQUIRED",
          f"{', '.join(PARKED_REASONS[:-1])} or {PARKED_REASONS[-1]} (herald.events.Reason)."),
    Field("detail", "STRING", "NULLABLE", "The parse error or the provider's last error message."),
    Field("provider_code", "STRING", "NULLABLE", "The provider's last error code, if any."),
    Field("attempts", "INTEGER", "NULLABLE", "Provider attempts made before it was parked."),
    Field("trace_id", "STRING", "NULLABLE", "The request's trace (absent for a poison message)."),
    Field("span_id", "STRING", "NULLABLE", "The delivery that was parked (absent for a whole message)."),
    Field("notification_id", "STRING", "NULLABLE", "The sender's notificationId."),
    Field("sender_client", "STRING", "NULLABLE", "API client that sent the request."),
    Field("channel", "STRING", "NULLABLE", "push, sms or email."),
    Field("data", "STRING", "REQUIRED",
          "The original message body as text (invalid UTF-8 replaced); the dead-letter topic "
          "keeps its exact bytes."),
    Field("attributes", "STRING", "NULLABLE", "The original message's attributes, as JSON."),
)
PARTITION_FIELD = "dead_lettered_at"

_PREFIX = "dlq_"
"""Of the attributes a dead letter adds on the dead-letter topic (`dlq_id`, `dlq_reason`, ...)."""


def bigquery_schema() -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField(f.name, f.type, mode=f.mode, description=f.description)
            for f in DEAD_LETTER_FIELDS]


@dataclass(frozen=True)
class DeadLetter:
    """One parked item: the original message (data and attributes) and why it was parked."""

    source_topic: str
    reason: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    span_id: str | None = None
    detail: str | None = None
    provider_code: str | None = None
    attempts: int | None = None
    dead_lettered_at: str = field(default_factory=utc_now_iso)

    @classmethod
    def of_delivery(cls, source_topic: str, envelope: Envelope, span_id: str, reason: str,
                    **extra: Any) -> DeadLetter:
        """A delivery parked by the send step: its request as first published, and its span."""
        data, attributes = Envelope(envelope.request, envelope.trace_id, envelope.sender_client,
                                    envelope.accepted_at).to_pubsub()
        replayed = envelope.scope.replay_id  # parked again on a replay: a new item, a new id
        if replayed:
            attributes["replay_id"] = replayed
        return cls(source_topic, reason, data, attributes, span_id=span_id, **extra)

    @property
    def dead_letter_id(self) -> str:
        subject = self.span_id or hashlib.sha256(self.data).hexdigest()
        parts = (self.source_topic, subject, self.attributes.get("replay_id", ""))
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]

    def to_row(self) -> dict[str, Any]:
        """The `dead_letters` table row (text made valid UTF-8: a poison message may carry lone
        surrogates in what is read out of it)."""
        row = {
            "dead_letter_id": self.dead_letter_id,
            "dead_lettered_at": self.dead_lettered_at,
            "source_topic": self.source_topic,
            "reason": self.reason,
            "detail": self.detail,
            "provider_code": self.provider_code,
            "attempts": self.attempts,
            "trace_id": self.attributes.get("trace_id"),
            "span_id": self.span_id,
            "notification_id": _notification_id(self.data),
            "sender_client": self.attributes.get("sender_client"),
            "channel": self.attributes.get("channel"),
            "data": self.data.decode("utf-8", "replace"),
            "attributes": json.dumps(dict(self.attributes), sort_keys=True),
        }
        return {name: utf8_text(value) for name, value in row.items()}

    def to_pubsub(self) -> tuple[bytes, dict[str, str]]:
        """The dead-letter topic's message: the original bytes, its attributes and `dlq_*`."""
        ours = {"id": self.dead_letter_id, "reason": self.reason,
                "source_topic": self.source_topic, "span_id": self.span_id,
                "dead_lettered_at": self.dead_lettered_at}
        return self.data, {**self.attributes,
                           **{_PREFIX + key: value for key, value in ours.items() if value}}

    @classmethod
    def from_pubsub(cls, data: bytes, attributes: Mapping[str, str]) -> DeadLetter:
        """Read back a dead-letter topic message; KeyError if it is not one of Herald's."""
        original = {k: v for k, v in attributes.items() if not k.startswith(_PREFIX)}
        return cls(source_topic=attributes[_PREFIX + "source_topic"],
                   reason=attributes[_PREFIX + "reason"], data=data, attributes=original,
                   span_id=attributes.get(_PREFIX + "span_id"),
                   dead_lettered_at=attributes.get(_PREFIX + "dead_lettered_at", ""))

    @property
    def replayable(self) -> bool:
        """An event row BigQuery refused came from no topic: it is fixed and inserted by hand."""
        return self.reason != Reason.ROW_REJECTED

    def replay(self) -> tuple[str, bytes, dict[str, str]]:
        """(topic, data, attributes) that send it back through: a delivery scoped to its span
        under this dead letter's id, anything else as it first came."""
        if self.span_id is None:
            return self.source_topic, self.data, dict(self.attributes)
        scope = Scope(only_span=self.span_id, replay_id=self.dead_letter_id)
        unscoped = {k: v for k, v in self.attributes.items() if k not in Scope.ATTRIBUTES}
        return self.source_topic, self.data, {**unscoped, **scope.to_attributes()}


def _notification_id(data: bytes) -> str | None:
    """The request's notificationId if the message has a string one (a poison message may hold
    anything there, and the column is a STRING)."""
    try:
        request = json.loads(data).get("request")
        value = request.get("notificationId") if isinstance(request, dict) else None
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
