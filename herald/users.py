"""The Firestore layout of users and devices: the one description of the documents that the
registry API (`ingest_function/registry.py`) writes, the pipeline (`pipelines/directory.py`,
`pipelines/recipients.py`) reads, and the demo seed (`herald/local/seed.py`) fills.

They live in the app's `(default)` database (`herald.clients.firestore_client`):

  users/{userId}
      email, phone (E.164), locale (BCP 47), timezone (IANA)        contacts
      notification_enabled: bool                                   global switch
      categories: {category: bool}                                 per category
      channels: {push|sms|email: bool}                             per channel
      quiet_hours: {start: "HH:MM", end: "HH:MM"}                  local time, in `timezone`
      topics: [topic, ...]                                         subscriptions (audience sends)
      provider_opt_outs: {channel: {source, reason, at}}           written by the pipeline
  users/{userId}/devices/{deviceId}
      platform (ios|android|web), token, notification_enabled: bool,
      disabled_reason, disabled_at                                 written by the pipeline
  device_tokens/{sha256(token)}: user_id, device_id                one token, one device

A switch that is absent reads as on: only an explicit `false` turns something off. The token
index (`device_tokens`) is written by the registry API in the same transaction as the device, so
a token registered to a second device moves there atomically; a collection-group query on
`devices.token` would need a collection-group index deployed and could not be read and written
in one transaction with the device.
"""

from __future__ import annotations

import hashlib
import json
import re
import zoneinfo
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Mapping

import email_validator
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from herald.contracts import (MAX_NAME, Audience, Channel, ContractError, Platform, document_id,
                              text)
from herald.events import Status, registry_event

USERS = "users"
DEVICES = "devices"
DEVICE_TOKENS = "device_tokens"

# users/{userId}
EMAIL = "email"
PHONE = "phone"
ADDRESS_FIELDS = {Channel.SMS: PHONE, Channel.EMAIL: EMAIL}
"""The user document field holding each addressed channel's address (push addresses devices)."""
LOCALE = "locale"
TIMEZONE = "timezone"
CONTACT_FIELDS = (EMAIL, PHONE, LOCALE, TIMEZONE)
NOTIFICATION_ENABLED = "notification_enabled"
CATEGORIES = "categories"
CHANNELS = "channels"
QUIET_HOURS = "quiet_hours"
QUIET_HOURS_START = "start"
QUIET_HOURS_END = "end"
TOPICS = "topics"
PROVIDER_OPT_OUTS = "provider_opt_outs"
"""{channel: {"source": provider, "reason": the provider's word, "at": ISO time}}, one entry per
channel whose provider reported the recipient's opt-out."""

# users/{userId}/devices/{deviceId} (and NOTIFICATION_ENABLED)
PLATFORM = "platform"
TOKEN = "token"
DISABLED_REASON = "disabled_reason"
DISABLED_AT = "disabled_at"

# device_tokens/{token_id(token)}
TOKEN_USER_ID = "user_id"
TOKEN_DEVICE_ID = "device_id"


def user_ref(client: firestore.Client, user_id: str) -> firestore.DocumentReference:
    return client.collection(USERS).document(user_id)


def device_ref(client: firestore.Client, user_id: str,
               device_id: str) -> firestore.DocumentReference:
    return user_ref(client, user_id).collection(DEVICES).document(device_id)


def token_id(token: str) -> str:
    """The token index's document id: a token may be longer than a document id may be, or hold
    characters Firestore refuses there."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_ref(client: firestore.Client, token: str) -> firestore.DocumentReference:
    return client.collection(DEVICE_TOKENS).document(token_id(token))


def switch(document: Mapping[str, Any], *path: str) -> bool | None:
    """A switch at `path` in a document (e.g. (CATEGORIES, "marketing")): True, False, or None when
    unset; anything malformed on the way (an app-written list, a string) reads as unset."""
    value: Any = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, bool) else None


def provider_opt_out(user: Mapping[str, Any], channel: Channel) -> Mapping[str, Any] | None:
    """The opt-out a provider reported for `channel` on this user document, if any."""
    opt_outs = user.get(PROVIDER_OPT_OUTS)
    entry = opt_outs.get(channel.value) if isinstance(opt_outs, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


@dataclass(frozen=True)
class PageRead:
    """One page of an audience as read: the users it keeps, how many it `read`, and the id of the
    last one read (the next page's cursor; None when none was read)."""

    kept: tuple[str, ...]
    read: int
    last: str | None


def audience_page(client: firestore.Client, audience: Audience, after: str | None,
                  limit: int) -> PageRead:
    """One page of an audience: the (at most `limit`) users after document id `after` that match
    the topic (`topics` array-contains) or the segment's `locale` / `timezone` (equality), in
    document id order. Equality and array-contains filters
    ordered by document id are served by Firestore's automatic single-field indexes (index
    merging for two equalities), so no composite index is needed
    (https://cloud.google.com/firestore/docs/query-data/index-overview). A segment's `category`
    (not switched off: false, unlike absent, cannot be queried) is applied to the page read, so a
    page may keep fewer than it read. Only the fields the filter needs are read."""
    query = client.collection(USERS)
    segment = audience.segment
    if audience.topic is not None:
        query = query.where(filter=FieldFilter(TOPICS, "array_contains", audience.topic))
    for field_name, value in ((LOCALE, segment and segment.locale),
                              (TIMEZONE, segment and segment.timezone)):
        if value:
            query = query.where(filter=FieldFilter(field_name, "==", value))
    category = segment.category if segment else None
    query = query.select([CATEGORIES] if category else [FieldPath.document_id()])
    query = query.order_by(FieldPath.document_id()).limit(limit)
    if after is not None:
        query = query.start_after({FieldPath.document_id(): user_ref(client, after)})
    snapshots = list(query.stream())
    kept = tuple(snapshot.id for snapshot in snapshots if category is None or switch(
        snapshot.to_dict() or {}, CATEGORIES, category) is not False)
    return PageRead(kept, len(snapshots), snapshots[-1].id if snapshots else None)


# --- What the registry API accepts: request bodies checked and turned into document fields. ---

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
"""ITU-T E.164 as Twilio takes it: `+`, a country code, at most 15 digits in all
(https://www.twilio.com/docs/glossary/what-e164)."""
BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*")
"""A BCP 47 language tag's common form (RFC 5646 section 2.1): language, optional script, region
and variants, e.g. `ko`, `ko-KR`, `zh-Hant-TW`, `es-419`."""
LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAX_TOKEN = 4096


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ContractError(path, "must be a JSON object")
    return value


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise ContractError(f"{prefix}{key}", f"is not a known field; use {list(allowed)}")


def name(value: Any, path: str) -> str:
    """A user, device, category or topic name: a string Firestore takes as a document id."""
    return document_id(text(value, path, MAX_NAME), path)


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _contact(key: str, value: Any) -> str:
    given = text(value, key, MAX_NAME)
    if key == EMAIL:
        try:
            return email_validator.validate_email(given, check_deliverability=False).normalized
        except email_validator.EmailNotValidError as error:
            raise ContractError(key, f"is not an email address: {error}") from error
    if key == PHONE and not E164.fullmatch(given):
        raise ContractError(key, "must be an E.164 number such as +15551234567")
    if key == LOCALE and not BCP47.fullmatch(given):
        raise ContractError(key, "must be a BCP 47 language tag such as ko-KR")
    if key == TIMEZONE and given not in _time_zones():
        raise ContractError(key, "must be an IANA time zone such as Asia/Seoul")
    return given


def parse_contacts(body: Any) -> dict[str, str | None]:
    """`PUT /v1/users/{userId}`'s body -> every contact field, None for the ones not given (a PUT
    replaces the contacts; switches, devices and topics stay). ContractError names the field."""
    body = _object(body, "body")
    _only(body, CONTACT_FIELDS)
    return {key: None if body.get(key) is None else _contact(key, body[key])
            for key in CONTACT_FIELDS}


def parse_device(body: Any) -> dict[str, str]:
    """`PUT /v1/users/{userId}/devices/{deviceId}`'s body -> {platform, token}."""
    body = _object(body, "body")
    _only(body, (PLATFORM, TOKEN))
    platforms = [platform.value for platform in Platform]
    if body.get(PLATFORM) not in platforms:
        raise ContractError(PLATFORM, f"must be one of {platforms}, got {body.get(PLATFORM)!r}")
    return {PLATFORM: body[PLATFORM], TOKEN: text(body.get(TOKEN), TOKEN, MAX_TOKEN)}


def _switch_value(value: Any, path: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ContractError(path, "must be true, false or null (null: back to the default, on)")
    return value


def _quiet_hours(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    value = _object(value, QUIET_HOURS)
    _only(value, (QUIET_HOURS_START, QUIET_HOURS_END), f"{QUIET_HOURS}.")
    hours = {}
    for key in (QUIET_HOURS_START, QUIET_HOURS_END):
        path = f"{QUIET_HOURS}.{key}"
        if not isinstance(value.get(key), str) or not LOCAL_TIME.fullmatch(value[key]):
            raise ContractError(path, "must be a local time HH:MM (24-hour)")
        hours[key] = value[key]
    return hours


@dataclass(frozen=True)
class Preferences:
    """A `PATCH /v1/users/{userId}/preferences` body: the switches it sets, each as its field path
    in the user document (or in a device's) and its new value (None: deleted, back to on)."""

    user: Mapping[tuple[str, ...], Any]
    """(field, ...) -> value, e.g. (CATEGORIES, "marketing") -> False."""
    devices: Mapping[str, bool | None]
    """deviceId -> the device's NOTIFICATION_ENABLED."""


PREFERENCE_FIELDS = (NOTIFICATION_ENABLED, CATEGORIES, CHANNELS, DEVICES, QUIET_HOURS)


def parse_preferences(body: Any) -> Preferences:
    """Only the switches named change; each is a document field the pipeline reads (see the module
    docstring): `notification_enabled`, `categories.<name>`, `channels.<channel>`,
    `devices.<deviceId>.notification_enabled`, `quiet_hours`."""
    body = _object(body, "body")
    _only(body, PREFERENCE_FIELDS)
    if not body:
        raise ContractError("body", f"must set at least one of {list(PREFERENCE_FIELDS)}")
    user: dict[tuple[str, ...], Any] = {}
    if NOTIFICATION_ENABLED in body:
        user[(NOTIFICATION_ENABLED,)] = _switch_value(body[NOTIFICATION_ENABLED],
                                                      NOTIFICATION_ENABLED)
    for category, value in _object(body.get(CATEGORIES, {}), CATEGORIES).items():
        path = f"{CATEGORIES}.{category}"
        user[(CATEGORIES, name(category, path))] = _switch_value(value, path)
    channels = [channel.value for channel in Channel]
    for channel, value in _object(body.get(CHANNELS, {}), CHANNELS).items():
        path = f"{CHANNELS}.{channel}"
        if channel not in channels:
            raise ContractError(path, f"is not a channel; use {channels}")
        user[(CHANNELS, channel)] = _switch_value(value, path)
    if QUIET_HOURS in body:
        user[(QUIET_HOURS,)] = _quiet_hours(body[QUIET_HOURS])
    devices: dict[str, bool | None] = {}
    for device_id, device in _object(body.get(DEVICES, {}), DEVICES).items():
        path = f"{DEVICES}.{device_id}"
        device = _object(device, path)
        _only(device, (NOTIFICATION_ENABLED,), f"{path}.")
        devices[name(device_id, path)] = _switch_value(device.get(NOTIFICATION_ENABLED),
                                                       f"{path}.{NOTIFICATION_ENABLED}")
    return Preferences(user, devices)


# --- The record of every change: published by the edge, written to BigQuery as events. ---

REGISTRY_ATTRIBUTE = "registry_change"
"""Pub/Sub attribute marking a message on the callbacks topic as a `RegistryChanges`, not a
provider callback: the callback pipeline writes both kinds of event rows."""


@dataclass(frozen=True)
class Change:
    """One setting of one user that an API request changed; `value` is JSON-able (None:
    removed). Contact addresses and tokens are never values: their changes record `true`."""

    status: Status
    user_id: str
    setting: str
    value: Any
    device_id: str | None = None


@dataclass(frozen=True)
class RegistryChanges:
    """What one registry API request changed, by whom (`sender_client`) and when."""

    trace_id: str
    sender_client: str
    changed_at: str
    changes: tuple[Change, ...]

    def to_pubsub(self) -> tuple[bytes, dict[str, str]]:
        data = json.dumps({
            "traceId": self.trace_id, "senderClient": self.sender_client,
            "changedAt": self.changed_at,
            "changes": [{**asdict(change), "status": change.status.value}
                        for change in self.changes]}, separators=(",", ":")).encode()
        return data, {REGISTRY_ATTRIBUTE: "true", "trace_id": self.trace_id}

    @classmethod
    def from_pubsub(cls, data: bytes) -> RegistryChanges:
        """Raises ValueError, KeyError or TypeError on a message `to_pubsub` did not make."""
        decoded = json.loads(data)
        return cls(decoded["traceId"], decoded["senderClient"], decoded["changedAt"],
                   tuple(Change(**{**change, "status": Status(change["status"])})
                         for change in decoded["changes"]))

    def to_events(self) -> list[dict[str, Any]]:
        """One `preference_changed` / `registry_changed` event row per change."""
        return [registry_event(
            status=change.status, trace_id=self.trace_id, user_id=change.user_id,
            sender_client=self.sender_client, setting=change.setting,
            value=None if change.value is None else json.dumps(change.value, sort_keys=True),
            changed_at=self.changed_at, device_id=change.device_id) for change in self.changes]
