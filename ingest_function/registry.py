"""The registry API: users' contacts, devices, preferences and topic subscriptions, written in the
Firestore layout the pipeline reads (herald/users.py).

    PUT    /v1/users/{userId}                        contacts; creates the user
    GET    /v1/users/{userId}
    DELETE /v1/users/{userId}                        erasure: the user, devices and token index
    PUT    /v1/users/{userId}/devices/{deviceId}     register a token (moved if another device has it)
    DELETE /v1/users/{userId}/devices/{deviceId}     logout
    PATCH  /v1/users/{userId}/preferences            switches and quiet hours
    PUT    /v1/users/{userId}/topics/{topic}         subscribe
    DELETE /v1/users/{userId}/topics/{topic}         unsubscribe
    PUT    /v1/templates/{templateType}/{locale}     a template's translation (herald/templates.py)

Every change is published as `RegistryChanges` on the callbacks topic once Firestore has it; the
callback pipeline writes one `preference_changed` / `registry_changed` event per change to
BigQuery. If that publish fails the answer is 503 and the change stays saved: the request can be
repeated (every call is idempotent) and records its switches again; a repeated contacts PUT records
only what differs from the stored document, so a contact change whose record was lost stays
unrecorded.

The handlers return (status, JSON body or None) or raise `RegistryError` / ContractError; the
entry point (main.py) authenticates and turns both into HTTP responses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import flask
from google.cloud import firestore, pubsub_v1
from google.cloud.firestore_v1.field_path import FieldPath
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from herald import users
from herald.contracts import topic_name, utc_now_iso
from herald.events import Status
from herald.settings import Settings
from herald.templates import TemplateStore, locale_id, parse_translation
from herald.users import Change, RegistryChanges
from ingest_function.outbox import PUBLISH_ERRORS, Message, publish

Answer = tuple[int, Any]


class RegistryError(Exception):
    """An answer other than success: status, the field it is about, and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


def unknown_user(user_id: str) -> RegistryError:
    return RegistryError(404, "userId", f"unknown_user: no user {user_id!r}; PUT it first")


@dataclass
class Registry:
    """Firestore (the app's database, where the pipeline reads users) and the publisher that
    records changes on the callbacks topic."""

    client: firestore.Client
    publisher: pubsub_v1.PublisherClient
    settings: Settings
    call: Mapping[str, Any]
    """Retry and timeout for Firestore calls (main._firestore_call)."""
    templates: TemplateStore

    def _record(self, sender: str, changes: list[Change]) -> None:
        if not changes:
            return
        record = RegistryChanges(uuid.uuid4().hex, sender, utc_now_iso(), tuple(changes))
        topic = self.settings.topic_path(self.settings.callbacks_topic)
        try:
            publish(self.publisher, Message(topic, *record.to_pubsub()),
                    self.settings.publish_timeout_s).result(timeout=self.settings.publish_timeout_s)
        except PUBLISH_ERRORS as error:
            raise RegistryError(503, "events", "the change is saved but its record could not be "
                                "published; repeat the request") from error

    def _existing(self, user_id: str, transaction: Any = None) -> dict[str, Any]:
        snapshot = users.user_ref(self.client, user_id).get(transaction=transaction,
                                                            **({} if transaction else self.call))
        if not snapshot.exists:
            raise unknown_user(user_id)
        return snapshot.to_dict()

    def get_user(self, user_id: str) -> Answer:
        document = self._existing(user_id)
        devices = users.user_ref(self.client, user_id).collection(users.DEVICES).stream(**self.call)
        return 200, _user_json(user_id, document, {d.id: d.to_dict() for d in devices})

    def put_user(self, sender: str, user_id: str, body: Any) -> Answer:
        contacts = users.parse_contacts(body)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> tuple[bool, dict[str, Any]]:
            snapshot = users.user_ref(self.client, user_id).get(transaction=transaction)
            before = snapshot.to_dict() if snapshot.exists else {}
            transaction.set(users.user_ref(self.client, user_id), {
                key: firestore.DELETE_FIELD if value is None else value
                for key, value in contacts.items()}, merge=True)
            return snapshot.exists, before

        existed, before = write(self.client.transaction())
        changes = [Change(Status.REGISTRY_CHANGED, user_id, f"contacts.{key}", _contact_value(key, value))
                   for key, value in contacts.items() if before.get(key) != value]
        if not existed:
            changes.insert(0, Change(Status.REGISTRY_CHANGED, user_id, "user", True))
        self._record(sender, changes)
        status, body = self.get_user(user_id)
        return (200 if existed else 201), body

    def delete_user(self, sender: str, user_id: str) -> Answer:
        """Erasure: the devices, their token index entries, then the user document."""
        self._existing(user_id)
        user = users.user_ref(self.client, user_id)
        batch = self.client.batch()
        for device in user.collection(users.DEVICES).stream(**self.call):
            token = device.to_dict().get(users.TOKEN)
            if isinstance(token, str) and token:
                self._stage_index_delete(batch, token, user_id, device.id)
            batch.delete(device.reference)
            if len(batch) >= 400:
                batch.commit(**self.call)
                batch = self.client.batch()
        batch.delete(user)
        batch.commit(**self.call)
        self._record(sender, [Change(Status.REGISTRY_CHANGED, user_id, "user", None)])
        return 204, None

    def _stage_index_delete(self, writes: Any, token: str, user_id: str, device_id: str) -> None:
        """Drop a token's index entry if it still names this device (read outside a
        transaction: erasure and logout only ever remove their own entry)."""
        entry = users.token_ref(self.client, token).get(**self.call).to_dict() or {}
        if (entry.get(users.TOKEN_USER_ID), entry.get(users.TOKEN_DEVICE_ID)) == (user_id, device_id):
            writes.delete(users.token_ref(self.client, token))

    def put_device(self, sender: str, user_id: str, device_id: str, body: Any) -> Answer:
        """Register (or re-register) a device's token. If the token's index names another device,
        that device is deleted in the same transaction: one token, one device. A device that
        token hygiene disabled is enabled again by a new registration."""
        device = users.parse_device(body)
        token = device[users.TOKEN]

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> tuple[str, str] | None:
            self._existing(user_id, transaction)
            ref = users.device_ref(self.client, user_id, device_id)
            current = ref.get(transaction=transaction)
            entry = users.token_ref(self.client, token).get(transaction=transaction).to_dict() or {}
            owner = (entry.get(users.TOKEN_USER_ID), entry.get(users.TOKEN_DEVICE_ID))
            moved_from = None
            if entry and owner != (user_id, device_id):
                old = users.device_ref(self.client, *owner)
                if (old.get(transaction=transaction).to_dict() or {}).get(users.TOKEN) == token:
                    transaction.delete(old)
                    moved_from = owner
            previous = current.to_dict() if current.exists else {}
            old_token = previous.get(users.TOKEN)
            if isinstance(old_token, str) and old_token and old_token != token:
                transaction.delete(users.token_ref(self.client, old_token))
            enabled = previous.get(users.NOTIFICATION_ENABLED, True) is not False or bool(
                previous.get(users.DISABLED_REASON))
            transaction.set(ref, {**device, users.NOTIFICATION_ENABLED: enabled})
            transaction.set(users.token_ref(self.client, token),
                            {users.TOKEN_USER_ID: user_id, users.TOKEN_DEVICE_ID: device_id})
            return moved_from

        moved_from = write(self.client.transaction())
        changes = [Change(Status.REGISTRY_CHANGED, user_id, f"devices.{device_id}",
                          {users.PLATFORM: device[users.PLATFORM]}, device_id)]
        if moved_from is not None:
            changes.append(Change(Status.REGISTRY_CHANGED, moved_from[0],
                                  f"devices.{moved_from[1]}", None, moved_from[1]))
        self._record(sender, changes)
        return 204, None

    def delete_device(self, sender: str, user_id: str, device_id: str) -> Answer:
        """Logout: the device and its token's index entry; 204 whether it was there or not."""
        self._existing(user_id)
        ref = users.device_ref(self.client, user_id, device_id)
        snapshot = ref.get(**self.call)
        if not snapshot.exists:
            return 204, None
        batch = self.client.batch()
        token = snapshot.to_dict().get(users.TOKEN)
        if isinstance(token, str) and token:
            self._stage_index_delete(batch, token, user_id, device_id)
        batch.delete(ref)
        batch.commit(**self.call)
        self._record(sender, [Change(Status.REGISTRY_CHANGED, user_id, f"devices.{device_id}",
                                     None, device_id)])
        return 204, None

    def patch_preferences(self, sender: str, user_id: str, body: Any) -> Answer:
        """The switches named in the body, in one transaction over the user and its devices; a
        device that is not registered is 404 naming it."""
        preferences = users.parse_preferences(body)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> None:
            self._existing(user_id, transaction)
            refs = {device_id: users.device_ref(self.client, user_id, device_id)
                    for device_id in preferences.devices}
            for device_id, ref in refs.items():
                if not ref.get(transaction=transaction).exists:
                    raise RegistryError(404, f"devices.{device_id}", "no such device; PUT it first")
            if preferences.user:
                transaction.update(users.user_ref(self.client, user_id), {
                    FieldPath(*path).to_api_repr():
                        firestore.DELETE_FIELD if value is None else value
                    for path, value in preferences.user.items()})
            for device_id, enabled in preferences.devices.items():
                transaction.update(refs[device_id], {
                    users.NOTIFICATION_ENABLED: True if enabled is None else enabled,
                    users.DISABLED_REASON: firestore.DELETE_FIELD,
                    users.DISABLED_AT: firestore.DELETE_FIELD})

        write(self.client.transaction())
        changes = [Change(Status.PREFERENCE_CHANGED, user_id, ".".join(path), value)
                   for path, value in preferences.user.items()]
        changes += [Change(Status.PREFERENCE_CHANGED, user_id,
                           f"devices.{device_id}.{users.NOTIFICATION_ENABLED}", enabled, device_id)
                    for device_id, enabled in preferences.devices.items()]
        self._record(sender, changes)
        return self.get_user(user_id)

    def put_topic(self, sender: str, user_id: str, topic: str, subscribe: bool = True) -> Answer:
        self._existing(user_id)
        users.user_ref(self.client, user_id).update(
            {users.TOPICS: (firestore.ArrayUnion if subscribe else firestore.ArrayRemove)([topic])},
            **self.call)
        self._record(sender, [Change(Status.PREFERENCE_CHANGED, user_id, f"topics.{topic}",
                                     True if subscribe else None)])
        return 204, None

    def delete_topic(self, sender: str, user_id: str, topic: str) -> Answer:
        return self.put_topic(sender, user_id, topic, subscribe=False)

    def put_template(self, sender: str, template_type: str, locale: str, body: Any) -> Answer:
        """Store one translation of a template (`"default": true` makes its locale the default;
        the first one stored is the default until then)."""
        translation = parse_translation(body)
        default = isinstance(body, Mapping) and body.get("default") is True
        default_locale = self.templates.put(template_type, locale_id(locale), translation, default)
        return 200, {"templateType": template_type, "locale": locale,
                     "defaultLocale": default_locale, "variables": sorted(translation.variables())}


def _contact_value(key: str, value: str | None) -> Any:
    """What an event may hold about a contact: locale and time zone, or only that an address is
    set (true) or removed (None)."""
    if value is None or key in (users.LOCALE, users.TIMEZONE):
        return value
    return True


def _user_json(user_id: str, document: Mapping[str, Any],
               devices: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The GET shape: the user document's fields (herald/users.py) and its devices, tokens left
    out (a token is a credential to the device)."""
    return {"userId": user_id, **document,
            users.DEVICES: {device_id: {key: value for key, value in device.items()
                                        if key != users.TOKEN}
                            for device_id, device in devices.items()}}


ROUTES = Map([
    Rule("/v1/users/<user_id>", methods=["GET"], endpoint="get_user"),
    Rule("/v1/users/<user_id>", methods=["PUT"], endpoint="put_user"),
    Rule("/v1/users/<user_id>", methods=["DELETE"], endpoint="delete_user"),
    Rule("/v1/users/<user_id>/devices/<device_id>", methods=["PUT"], endpoint="put_device"),
    Rule("/v1/users/<user_id>/devices/<device_id>", methods=["DELETE"], endpoint="delete_device"),
    Rule("/v1/users/<user_id>/preferences", methods=["PATCH"], endpoint="patch_preferences"),
    Rule("/v1/users/<user_id>/topics/<topic>", methods=["PUT"], endpoint="put_topic"),
    Rule("/v1/users/<user_id>/topics/<topic>", methods=["DELETE"], endpoint="delete_topic"),
    Rule("/v1/templates/<template_type>/<locale>", methods=["PUT"], endpoint="put_template"),
], strict_slashes=False, merge_slashes=False)
"""Path parameters are checked against Firestore's document-id rules before any handler runs."""

PREFIXES = ("/v1/users/", "/v1/templates/")


def handles(path: str) -> bool:
    return path.startswith(PREFIXES)


def dispatch(request: flask.Request, sender: str, registry: Registry,
             read_json: Callable[[flask.Request], Any]) -> Answer:
    """Route `request` to its handler; RegistryError for an unknown route or method,
    ContractError for a bad path parameter or body."""
    try:
        endpoint, params = ROUTES.bind("").match(request.path, method=request.method)
    except MethodNotAllowed as error:
        raise RegistryError(405, "method", f"use one of {sorted(error.valid_methods or [])}") from error
    except NotFound as error:
        raise RegistryError(404, "path", f"no route {request.path}") from error
    names = {"user_id": "userId", "device_id": "deviceId", "topic": "topic",
             "template_type": "templateType", "locale": "locale"}
    params = {key: (topic_name if key == "topic" else users.name)(value, names[key])
              for key, value in params.items()}
    handler = getattr(registry, endpoint)
    if endpoint == "get_user":
        return handler(**params)
    if endpoint in ("put_user", "put_device", "patch_preferences", "put_template"):
        return handler(sender, body=read_json(request), **params)
    return handler(sender, **params)
