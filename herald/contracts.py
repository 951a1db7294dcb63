"""The request contract: the one definition of what a sender may POST and what travels on Pub/Sub.

The ingest function validates with it, the pipeline parses with it, and the channel, priority and
platform lists below are imported by every stage (BigQuery schema docs, dbt accepted_values, the
demo workload), so a new channel is added here once.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, ClassVar, Mapping

from herald.providers.fcm import limits as fcm_limits
from herald.providers.twilio import limits as twilio_limits

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted at the edge (an email body of the design's 100 KB average is
sent as a template plus variables, not inline)."""
MAX_SEND_AHEAD = timedelta(days=30)
"""Furthest ahead `metadata.sendTime` may be: Herald holds a scheduled notification in the
Firestore outbox until then."""
MAX_AUDIENCE = 1000
"""Most users one bulk request (`userIds`) may address: SendGrid's personalizations per request,
so a bulk email page is one provider call. A larger audience is sent as pages of this size."""
MAX_NAME = 256
"""Longest topic name (and registry category, topic or device id), in characters."""
FCM_TOPIC = re.compile(r"[a-zA-Z0-9\-_.~%]+")
"""The characters FCM allows in a topic name
(https://firebase.google.com/docs/cloud-messaging/send/topic-messages and
https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages#Message: `topic`), so a
Herald topic can be mirrored as an FCM topic."""


class Channel(StrEnum):
    """How a notification reaches a person; each channel has exactly one provider today."""

    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"


class Priority(StrEnum):
    """Urgent (disaster alerts) goes ahead of routine (parcel updates), even under load."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Platform(StrEnum):
    """Push targets; iOS goes through FCM with APNs settings."""

    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


DEVICE_INFO_PLATFORMS: Mapping[str, Platform] = {
    **{platform.value: platform for platform in Platform},
    "laptop": Platform.WEB,
    "desktop": Platform.WEB,
}
"""`metadata.deviceInfo` (compared case-insensitively) -> the platform a push is for; the
original design's "laptop" and "desktop" are browsers, so web push. Absent: every device."""


PROVIDER_BY_CHANNEL: Mapping[Channel, str] = {
    Channel.PUSH: "fcm",
    Channel.SMS: "twilio",
    Channel.EMAIL: "sendgrid",
}
CHANNEL_BY_PROVIDER: Mapping[str, Channel] = {p: c for c, p in PROVIDER_BY_CHANNEL.items()}


class ContractError(ValueError):
    """A request that breaks the contract; `field` names the offending JSON path for the sender."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


SEGMENT_FILTERS = ("locale", "timezone", "category")
"""What a segment may filter on: `locale` and `timezone` equal the user document's field (the
exact stored text: Firestore equality filters, served by its automatic single-field indexes);
`category` keeps the users who have not switched that category off (`categories.<name>` is not
false). Firestore cannot express "false or absent" in a query (a `!=` filter leaves out documents
without the field), so the pipeline applies `category` to each page it reads."""


@dataclass(frozen=True)
class Segment:
    """`audience.segment`: the users whose fields match every filter given (at least one)."""

    locale: str | None = None
    timezone: str | None = None
    category: str | None = None

    def to_json(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in SEGMENT_FILTERS if getattr(self, key) is not None}


@dataclass(frozen=True)
class Audience:
    """`audience`: who an audience send goes to, instead of `userId`/`userIds`: the users
    subscribed to `topic` (`PUT /v1/users/{userId}/topics/{topic}`), or a `segment`. The pipeline
    reads them from Firestore a page at a time (pipelines/audiences.py)."""

    topic: str | None = None
    segment: Segment | None = None

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic} if self.topic is not None else {
            "segment": self.segment.to_json()}


@dataclass(frozen=True)
class AudiencePage:
    """Which page of an audience send a message is about: its `number` (from 1), the `cursor` to
    read after (the document id of the previous page's last user read; None on page 1) and how
    many users the pages before it held (`users_before`)."""

    number: int = 1
    cursor: str | None = None
    users_before: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "cursor": self.cursor, "usersBefore": self.users_before}

    @classmethod
    def from_json(cls, value: Any) -> AudiencePage:
        if not isinstance(value, Mapping):
            raise ContractError("audiencePage", "must be an object")
        number, before = value.get("number"), value.get("usersBefore")
        cursor = value.get("cursor")
        if not isinstance(number, int) or number < 1 or not isinstance(before, int) or before < 0:
            raise ContractError("audiencePage", "must hold a number >= 1 and usersBefore >= 0")
        if cursor is not None and not isinstance(cursor, str):
            raise ContractError("audiencePage.cursor", "must be a user id or null")
        return cls(number, cursor, before)


@dataclass(frozen=True)
class NotificationRequest:
    """One sender request, in the body shape the README documents, plus the optional `priority`;
    a bulk request names its audience in `userIds` (`user_ids`) instead of one `userId`."""

    user_id: str | None
    notification_id: str
    service_type: str
    category_type: str
    channel: Channel
    template_type: str
    title: str | None
    """None (with `content`) when the template named by `template_type` supplies the texts."""
    content: str | None
    priority: Priority = Priority.NORMAL
    device_info: str | None = None
    send_time: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    user_ids: tuple[str, ...] = ()
    variables: Mapping[str, Any] = field(default_factory=dict)
    """`notificationInfo.variables`: the template's variables (JSON scalars by name)."""
    audience: Audience | None = None
    """An audience send's users (a topic or a segment). Once the pipeline has read one of its
    pages, `user_ids` holds that page's users (pipeline-internal: `to_json` keeps the audience)."""

    @property
    def templated(self) -> bool:
        """Whether the texts come from the template (no inline title and content)."""
        return self.title is None

    @property
    def send_at(self) -> datetime | None:
        """`metadata.sendTime` as an instant; None (or a past instant) means send now."""
        return None if self.send_time is None else datetime.fromisoformat(
            self.send_time.replace("Z", "+00:00"))

    @property
    def target_platform(self) -> Platform | None:
        """The only platform a push goes to (`metadata.deviceInfo`), or None for every device."""
        return None if self.device_info is None else DEVICE_INFO_PLATFORMS[self.device_info.lower()]

    @property
    def recipient_ids(self) -> tuple[str, ...]:
        """Every user the request addresses: its one user, a bulk request's users, or the users of
        the audience page the pipeline read."""
        return self.user_ids or (self.user_id,)

    def to_json(self) -> dict[str, Any]:
        """The sender-facing camelCase shape, so what is stored is what was asked for."""
        addressed = ({"audience": self.audience.to_json()} if self.audience is not None else
                     {"userIds": list(self.user_ids)} if self.user_ids else {"userId": self.user_id})
        body: dict[str, Any] = {
            **addressed,
            "notificationId": self.notification_id,
            "serviceType": self.service_type,
            "categoryType": self.category_type,
            "notificationType": self.channel.value,
            "templateType": self.template_type,
            "priority": self.priority.value,
            "notificationInfo": {} if self.templated else {"title": self.title,
                                                            "content": self.content},
            "metadata": {},
        }
        if self.variables:
            body["notificationInfo"]["variables"] = dict(self.variables)
        if self.data:
            body["notificationInfo"]["data"] = dict(self.data)
        if self.device_info is not None:
            body["metadata"]["deviceInfo"] = self.device_info
        if self.send_time is not None:
            body["metadata"]["sendTime"] = self.send_time
        return body


MAX_DOCUMENT_ID_BYTES = 1500
"""Firestore's limit on a document id, in UTF-8 bytes
(https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields)."""
_RESERVED_DOCUMENT_ID = re.compile(r"__.*__", re.DOTALL)


def _unicode_text(value: str, path: str) -> str:
    """JSON can carry lone UTF-16 surrogates ("\\ud800"), which no UTF-8 system downstream
    (Pub/Sub attributes, Firestore, BigQuery, the providers) accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ContractError(path, "must be valid Unicode text (no lone surrogates)") from error
    return value


def document_id(value: str, path: str) -> str:
    """`value` if Firestore can use it as a document id, else ContractError naming `path`.

    Firestore's rules (https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields):
    valid UTF-8, at most 1,500 bytes, no forward slash, not `.` or `..`, and not matching `__.*__`.
    Federated ids such as "auth0|acme/alice" break the slash rule: the sender must encode them."""
    if "/" in value:
        raise ContractError(path, "must not contain '/' (a Firestore document id); encode the id")
    if value in (".", ".."):
        raise ContractError(path, "must not be '.' or '..' (a Firestore document id)")
    if _RESERVED_DOCUMENT_ID.fullmatch(value):
        raise ContractError(path, "must not match __.*__ (reserved by Firestore)")
    if len(value.encode("utf-8")) > MAX_DOCUMENT_ID_BYTES:
        raise ContractError(path, f"must be at most {MAX_DOCUMENT_ID_BYTES} bytes of UTF-8")
    return value


def text(value: Any, path: str, max_len: int = 256) -> str:
    """`value` if it is a string that is not blank, at most `max_len` characters of valid
    Unicode; else ContractError naming `path`."""
    if not isinstance(value, str) or not value.strip():
        raise ContractError(path, "must be a non-empty string")
    if len(value) > max_len:
        raise ContractError(path, f"must be at most {max_len} characters")
    return _unicode_text(value, path)


def _string(body: Mapping[str, Any], key: str, path: str, *, required: bool = True,
            max_len: int = 256) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ContractError(path, "is required")
        return None
    return text(value, path, max_len)


def _object(body: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        if required:
            raise ContractError(key, "is required")
        return {}
    if not isinstance(value, Mapping):
        raise ContractError(key, "must be an object")
    return value


def _enum(body: Mapping[str, Any], key: str, kind: type[StrEnum], default: StrEnum | None) -> Any:
    value = body.get(key)
    if value is None and default is not None:
        return default
    allowed = [member.value for member in kind]
    if value not in allowed:
        raise ContractError(key, f"must be one of {allowed}, got {value!r}")
    return kind(value)


def _timestamp(value: str | None, path: str) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise ContractError(path, "must be an ISO-8601 timestamp") from error
    if parsed.tzinfo is None:
        raise ContractError(path, "must carry a time zone (e.g. ...Z)")
    return parsed.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _device_info(metadata: Mapping[str, Any]) -> str | None:
    """`metadata.deviceInfo` as sent, if it names a platform (see DEVICE_INFO_PLATFORMS)."""
    value = _string(metadata, "deviceInfo", "metadata.deviceInfo", required=False)
    if value is not None and value.lower() not in DEVICE_INFO_PLATFORMS:
        raise ContractError("metadata.deviceInfo", (
            f"must be one of {sorted(DEVICE_INFO_PLATFORMS)} (any case), the platform a push "
            f"goes to, or absent for every device; got {value!r}"))
    return value


def _send_time(metadata: Mapping[str, Any]) -> str | None:
    """`metadata.sendTime` in UTC; in the past is allowed (send now), beyond MAX_SEND_AHEAD not."""
    send_time = _timestamp(_string(metadata, "sendTime", "metadata.sendTime", required=False),
                           "metadata.sendTime")
    if send_time is not None and datetime.fromisoformat(send_time.replace("Z", "+00:00")) > (
            datetime.now(timezone.utc) + MAX_SEND_AHEAD):
        raise ContractError("metadata.sendTime", (
            f"must be at most {MAX_SEND_AHEAD.days} days ahead (when to send; in the past or "
            f"absent means now), got {send_time}"))
    return send_time


def topic_name(value: Any, path: str) -> str:
    """A topic name: FCM's topic characters (FCM_TOPIC), at most MAX_NAME, and a Firestore
    document id (so not `.`, `..` or `__.*__`); else ContractError naming `path`."""
    given = text(value, path, MAX_NAME)
    if not FCM_TOPIC.fullmatch(given):
        raise ContractError(path, "must use only the characters FCM allows in a topic name: "
                                  "letters, digits and - _ . ~ %")
    return document_id(given, path)


def _audience(body: Mapping[str, Any]) -> Audience | None:
    """`audience`: exactly one of `{"topic": name}` or `{"segment": {filter: value, ...}}` (see
    SEGMENT_FILTERS), never with `userId` or `userIds`."""
    if "audience" not in body:
        return None
    for other in ("userId", "userIds"):
        if other in body:
            raise ContractError("audience", f"cannot be combined with {other}")
    value = body["audience"]
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in (
            "topic", "segment"):
        raise ContractError("audience", 'must be {"topic": "<name>"} or {"segment": {...}}')
    if "topic" in value:
        return Audience(topic=topic_name(value["topic"], "audience.topic"))
    segment = value["segment"]
    if not isinstance(segment, Mapping) or not segment:
        raise ContractError("audience.segment",
                            f"must be an object with at least one of {list(SEGMENT_FILTERS)}")
    for key in segment:
        if key not in SEGMENT_FILTERS:
            raise ContractError(f"audience.segment.{key}",
                                f"is not a segment filter; use {list(SEGMENT_FILTERS)}")
    filters = {key: text(item, f"audience.segment.{key}", MAX_NAME)
               for key, item in segment.items()}
    if "category" in filters:
        document_id(filters["category"], "audience.segment.category")
    return Audience(segment=Segment(**filters))


def _user_ids(body: Mapping[str, Any]) -> tuple[str, ...]:
    """A bulk request's distinct `userIds` (1 to MAX_AUDIENCE), or () for a one-user request."""
    if "userIds" not in body:
        return ()
    if "userId" in body:
        raise ContractError("userIds", "cannot be combined with userId")
    value = body["userIds"]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_AUDIENCE:
        raise ContractError("userIds", f"must be a list of 1 to {MAX_AUDIENCE} user ids")
    for index, user_id in enumerate(value):
        path = f"userIds[{index}]"
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 256:
            raise ContractError(path, "must be a non-empty string of at most 256 characters")
        document_id(_unicode_text(user_id, path), path)
    if len(set(value)) != len(value):
        raise ContractError("userIds", "must not repeat a user id")
    return tuple(value)


def check_provider_limits(request: NotificationRequest) -> NotificationRequest:
    """What the channel's provider would refuse, refused now, naming the field: FCM's reserved
    data keys and 4,096-byte payload (herald/providers/fcm/limits.py: the UTF-8 bytes of title,
    content and every data key and value, the ids Herald adds included), Twilio's 1,600-character
    body (herald/providers/twilio/limits.py: the title, ": " and the content)."""
    if request.channel is Channel.PUSH:
        for key in request.data:
            if fcm_limits.reserved_data_key(key):
                raise ContractError(f"notificationInfo.data.{key}",
                                    "is reserved by FCM (from, message_type, google*, gcm*)")
        size = fcm_limits.push_payload_bytes(request.title or "", request.content or "",
                                             request.data, request.notification_id)
        if size > fcm_limits.MAX_PAYLOAD_BYTES:
            raise ContractError("notificationInfo", (
                f"makes a {size}-byte push payload; FCM takes at most "
                f"{fcm_limits.MAX_PAYLOAD_BYTES} bytes of title, content and data keys and "
                f"values (UTF-8, with the {len(fcm_limits.HERALD_DATA_KEYS)} ids Herald adds)"))
    elif request.channel is Channel.SMS:
        length = len(twilio_limits.sms_body(request.title or "", request.content or ""))
        if length > twilio_limits.MAX_BODY_CHARS:
            raise ContractError("notificationInfo.content", (
                f"makes a {length}-character SMS (title, ': ', content); Twilio takes at most "
                f"{twilio_limits.MAX_BODY_CHARS}"))
    return request


MAX_VARIABLES = 100


def _variables(info: Mapping[str, Any]) -> dict[str, Any]:
    """`notificationInfo.variables`: an object of JSON scalars (string, number, boolean, null)
    named by strings; a template's text refers to them by name."""
    path = "notificationInfo.variables"
    value = info.get("variables", {})
    if not isinstance(value, Mapping) or len(value) > MAX_VARIABLES:
        raise ContractError(path, f"must be an object of at most {MAX_VARIABLES} variables")
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ContractError(path, f"{key!r} is not a variable name (letters, digits, _)")
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise ContractError(f"{path}.{key}", "must be a string, number, boolean or null")
        if isinstance(item, str):
            _unicode_text(item, f"{path}.{key}")
    return dict(value)


def _texts(info: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Inline `title` and `content`, or neither: then the template supplies them."""
    if info.get("title") is None and info.get("content") is None:
        return None, None
    return (_string(info, "title", "notificationInfo.title", max_len=1024),
            _string(info, "content", "notificationInfo.content", max_len=32 * 1024))


def parse_request(body: Any, *, generate_id: bool = True) -> NotificationRequest:
    """Validate a decoded JSON body against the contract.

    `generate_id` lets the edge mint a notificationId when the sender omits one; the pipeline
    parses with it off, because by then an id must exist.
    """
    if not isinstance(body, Mapping):
        raise ContractError("body", "must be a JSON object")
    info = _object(body, "notificationInfo", required=True)
    metadata = _object(body, "metadata", required=False)
    notification_id = _string(body, "notificationId", "notificationId", required=not generate_id)
    data = info.get("data", {})
    if not isinstance(data, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ContractError("notificationInfo.data", "must be an object of string values")
    for key, value in data.items():
        _unicode_text(key, "notificationInfo.data")
        _unicode_text(value, f"notificationInfo.data.{key}")
    audience = _audience(body)
    user_ids = _user_ids(body)
    user_id = None if user_ids or audience else _string(body, "userId", "userId")
    title, content = _texts(info)
    return check_provider_limits(NotificationRequest(
        user_id=user_id and document_id(user_id, "userId"),
        user_ids=user_ids,
        audience=audience,
        notification_id=notification_id or str(uuid.uuid4()),
        service_type=_string(body, "serviceType", "serviceType"),
        category_type=_string(body, "categoryType", "categoryType"),
        channel=_enum(body, "notificationType", Channel, None),
        template_type=_string(body, "templateType", "templateType"),
        title=title,
        content=content,
        variables=_variables(info),
        priority=_enum(body, "priority", Priority, Priority.NORMAL),
        device_info=_device_info(metadata),
        send_time=_send_time(metadata),
        data=dict(data),
    ))


@dataclass(frozen=True)
class Scope:
    """Which deliveries of an already accepted request a republished message is about.

    A first publish covers them all. `herald reconcile` republishes a request whose pipeline run
    was lost part-way, skipping the deliveries that already ended (`skip_spans`); `herald dlq
    replay` republishes one dead-lettered delivery (`only_span`) under a `replay_id`, so it is
    retried although its first attempt still holds the delivery's claims.

    `only_span` and `replay_id` travel as message attributes; `skip_spans` in the message data
    (`SKIP_SPANS_FIELD`), since a bulk request's ended deliveries (up to 1,000 span ids of 16
    characters) would pass Pub/Sub's limit of 1,024 bytes per attribute value
    (https://cloud.google.com/pubsub/quotas#resource_limits; the emulator does not enforce it).
    """

    only_span: str | None = None
    skip_spans: frozenset[str] = frozenset()
    replay_id: str | None = None
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ("only_span", "replay_id")

    def covers(self, span_id: str) -> bool:
        return span_id not in self.skip_spans and self.only_span in (None, span_id)

    @property
    def quiet_release(self) -> bool:
        """Whether this republish is a delivery held for its user's quiet hours, now released
        (pipelines/pacing.py): it is not held again."""
        return (self.replay_id or "").startswith(QUIET_REPLAY_PREFIX)

    @property
    def takes_over_claims(self) -> bool:
        """Whether this republish may take over its delivery's unfinished claim (one its first
        attempt made and never marked): an operator's `herald dlq replay`, who judged the provider
        did not take it, or a resend the provider asked for by refusing with a wait. Not a
        quiet-hours release (QUIET_REPLAY_PREFIX): it was held before any send, so an unfinished
        claim it meets is a run that died mid-send (a reconciler republish met quiet hours), and
        the provider may have that message."""
        return bool(self.replay_id) and not self.quiet_release

    def to_attributes(self) -> dict[str, str]:
        attributes = {"only_span": self.only_span, "replay_id": self.replay_id}
        return {key: value for key, value in attributes.items() if value}

    @staticmethod
    def replay_id_of(attributes: Mapping[str, str]) -> str | None:
        """The replay id a message's attributes name (an operator's replay), if any."""
        return attributes.get("replay_id") or None

    def to_data(self) -> dict[str, list[str]]:
        """The scope's part of the message data (nothing when no delivery is skipped)."""
        return {SKIP_SPANS_FIELD: sorted(self.skip_spans)} if self.skip_spans else {}

    @classmethod
    def from_message(cls, decoded: Mapping[str, Any], attributes: Mapping[str, str]) -> Scope:
        """Read a published message's scope; ContractError if its skip list is not span ids."""
        skip = decoded.get(SKIP_SPANS_FIELD, [])
        if not isinstance(skip, list) or not all(isinstance(span, str) for span in skip):
            raise ContractError(SKIP_SPANS_FIELD, "must be a list of span ids")
        return cls(only_span=attributes.get("only_span") or None, skip_spans=frozenset(skip),
                   replay_id=cls.replay_id_of(attributes))


SKIP_SPANS_FIELD = "skipSpans"
QUIET_REPLAY_PREFIX = "quiet-"
"""The replay id prefix of a delivery held for its user's quiet hours (pipelines/pacing.py)."""


class Release(StrEnum):
    """What a scheduled request's copy from the outbox is (its `RELEASE_ATTRIBUTE`): `due`, its
    sendTime has come, plan and send it (never hold it again); `canceled`, its sender canceled it
    (`DELETE /v1/notifications/{notificationId}`), record that and send nothing."""

    DUE = "due"
    CANCELED = "canceled"


RELEASE_ATTRIBUTE = "release"


HEARTBEAT_ATTRIBUTE = "herald_heartbeat"
"""Marks a message on a Herald topic that carries nothing to deliver: the edge's probe of Pub/Sub
while its circuit breaker is open (`ingest_function/breaker.py`). The pipelines drop it (counted) and `herald reconcile` acknowledges
it."""


@dataclass(frozen=True)
class Envelope:
    """What the ingest function publishes: the request plus who sent it, when, and its trace id.

    The trace id is minted once per accepted HTTP request; every event of every delivery that
    request fans out to carries it, so a failure traces back to its request and sender.
    """

    request: NotificationRequest
    trace_id: str
    sender_client: str
    accepted_at: str
    scope: Scope = Scope()
    release: Release | None = None
    """Set on the copy of a scheduled request the outbox publishes (see Release)."""
    page: AudiencePage | None = None
    """On an audience send: the page this message is about; None on the edge's message, which
    is page 1 (pipelines/audiences.py publishes each next page's message)."""

    @property
    def audience_page(self) -> AudiencePage | None:
        """The page of an audience send this message is about (page 1 for the edge's message);
        None for a request that names its users."""
        if self.request.audience is None:
            return None
        return self.page or AudiencePage()

    @property
    def held_until(self) -> datetime | None:
        """The sendTime this request must wait for, or None to go now: a future sendTime on a
        request that is not already the outbox's release of it."""
        send_at = self.request.send_at
        if self.release is not None or send_at is None or send_at <= datetime.now(timezone.utc):
            return None
        return send_at

    @property
    def claim_token(self) -> str:
        """Who holds a delivery's claim: the request, or one replay of it (see `Scope`)."""
        return f"{self.trace_id}#{self.scope.replay_id}" if self.scope.replay_id else self.trace_id

    def to_pubsub(self) -> tuple[bytes, dict[str, str]]:
        """Message data and attributes; channel and priority are attributes so subscriptions
        and the pipeline can route without decoding the body, and so is the scope but for its
        skip list (see Scope)."""
        data = json.dumps({
            "request": self.request.to_json(),
            "traceId": self.trace_id,
            "senderClient": self.sender_client,
            "acceptedAt": self.accepted_at,
            **({"audiencePage": self.page.to_json()} if self.page is not None else {}),
            **self.scope.to_data(),
        }, separators=(",", ":")).encode()
        attributes = {
            "channel": self.request.channel.value,
            "priority": self.request.priority.value,
            "trace_id": self.trace_id,
            "sender_client": self.sender_client,
            **self.scope.to_attributes(),
            **({RELEASE_ATTRIBUTE: self.release.value} if self.release else {}),
        }
        return data, attributes

    @classmethod
    def from_pubsub(cls, data: bytes, attributes: Mapping[str, str] | None = None) -> Envelope:
        """Parse a published message; raises ContractError (or ValueError) on anything malformed."""
        try:
            decoded = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ContractError("message", f"is not JSON: {error}") from error
        if not isinstance(decoded, Mapping):
            raise ContractError("message", "must be a JSON object")
        request = parse_request(decoded.get("request"), generate_id=False)
        return cls(
            request=request,
            trace_id=_string(decoded, "traceId", "traceId"),
            sender_client=_string(decoded, "senderClient", "senderClient"),
            accepted_at=_timestamp(_string(decoded, "acceptedAt", "acceptedAt"), "acceptedAt"),
            scope=Scope.from_message(decoded, attributes or {}),
            release=_release((attributes or {}).get(RELEASE_ATTRIBUTE)),
            page=None if decoded.get("audiencePage") is None or request.audience is None
            else AudiencePage.from_json(decoded["audiencePage"]),
        )


def _release(value: str | None) -> Release | None:
    if value is None:
        return None
    if value not in Release._value2member_map_:
        raise ContractError(RELEASE_ATTRIBUTE, f"must be one of {[r.value for r in Release]}")
    return Release(value)


def new_envelope(request: NotificationRequest, sender_client: str) -> Envelope:
    """Stamp an accepted request with a fresh trace id and the acceptance time."""
    return Envelope(
        request=request,
        trace_id=uuid.uuid4().hex,
        sender_client=sender_client,
        accepted_at=utc_now_iso(),
    )


def utc_now_iso() -> str:
    """Microsecond UTC timestamps in one format, the one BigQuery's TIMESTAMP accepts."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

