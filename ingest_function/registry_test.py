"""The registry API through functions-framework's test client, on the real Firestore and Pub/Sub
emulators: what it writes is what the pipeline's planner reads, and every change is published as
its event record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import flask
import pytest
from functions_framework import create_app
from google.cloud import firestore, pubsub_v1

from herald import users
from herald.contracts import new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.events import Reason
from herald.users import RegistryChanges
from pipelines.recipients import plan_deliveries

PROJECT = "herald-registry-test"
SOURCE = Path(__file__).with_name("main.py")
AUTH = {"Authorization": "Bearer test-key"}
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture(scope="module")
def changes_subscription(pubsub_emulator: str) -> str:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/notification-callbacks").name
    publisher.create_topic(name=f"projects/{PROJECT}/topics/notification-requests")
    name = f"projects/{PROJECT}/subscriptions/registry-probe"
    subscriber.create_subscription(name=name, topic=topic)
    return name


def pull_events(subscription: str) -> list[dict[str, Any]]:
    """The event rows of every registry change published since the last pull."""
    subscriber = pubsub_v1.SubscriberClient()
    rows = []
    while True:
        response = subscriber.pull(subscription=subscription, max_messages=100,
                                   return_immediately=True)
        if not response.received_messages:
            return rows
        subscriber.acknowledge(subscription=subscription,
                               ack_ids=[m.ack_id for m in response.received_messages])
        for received in response.received_messages:
            assert received.message.attributes[users.REGISTRY_ATTRIBUTE] == "true"
            rows += RegistryChanges.from_pubsub(received.message.data).to_events()


@pytest.fixture
def make_app(changes_subscription: str, pubsub_emulator: str, firestore_emulator: str,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., flask.Flask]:
    def make(**env: str) -> flask.Flask:
        for name, value in {"HERALD_PROJECT": PROJECT, "HERALD_API_KEYS": "test-key:crm",
                            "PUBSUB_EMULATOR_HOST": pubsub_emulator,
                            "FIRESTORE_EMULATOR_HOST": firestore_emulator,
                            "HERALD_PUBLISH_TIMEOUT_S": "2", **env}.items():
            monkeypatch.setenv(name, value)
        return create_app(target="notifications", source=str(SOURCE))
    return make


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    return firestore.Client(project=PROJECT)


@pytest.fixture
def user_id(client, changes_subscription) -> str:
    """A fresh registered user (its creation's events already pulled)."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    response = client.put(f"/v1/users/{user}", headers=AUTH, json={
        "email": "Ana@Example.com", "phone": "+821012345678", "locale": "ko-KR",
        "timezone": "Asia/Seoul"})
    assert response.status_code == 201, response.get_json()
    pull_events(changes_subscription)
    return user


def plan(db: firestore.Client, user_id: str, **body: Any) -> list[Reason | None]:
    """How the pipeline's planner decides on a request to the user, from what the API stored."""
    user = users.user_ref(db, user_id).get().to_dict()
    devices = {d.id: d.to_dict()
               for d in users.user_ref(db, user_id).collection(users.DEVICES).stream()}
    envelope = new_envelope(parse_request({**DESIGN_BODY, "userId": user_id, "metadata": {},
                                           **body}), "crm")  # every device, whatever platform
    return [reason for _, reason in plan_deliveries(envelope, user_id, user, devices, b"k")]


def test_a_user_is_created_read_and_its_contacts_replaced(client, db, user_id,
                                                          changes_subscription) -> None:
    body = client.get(f"/v1/users/{user_id}", headers=AUTH).get_json()
    assert body == {"userId": user_id, "email": "Ana@example.com", "phone": "+821012345678",
                    "locale": "ko-KR", "timezone": "Asia/Seoul", "devices": {}}
    again = client.put(f"/v1/users/{user_id}", headers=AUTH,
                       json={"email": "ana@example.org", "locale": "ko-KR"})
    assert again.status_code == 200
    assert "phone" not in again.get_json() and again.get_json()["email"] == "ana@example.org"
    events = {(e["status"], e["setting"], e["value"], e["sender_client"])
              for e in pull_events(changes_subscription)}
    # Addresses are never in events: only that one is set or removed.
    assert events == {("registry_changed", "contacts.email", "true", "crm"),
                      ("registry_changed", "contacts.phone", None, "crm"),
                      ("registry_changed", "contacts.timezone", None, "crm")}


def test_device_registration_and_a_category_switch_reach_the_planner(
        client, db, user_id, changes_subscription) -> None:
    assert client.put(f"/v1/users/{user_id}/devices/phone", headers=AUTH,
                      json={"platform": "ios", "token": f"tok-{user_id}"}).status_code == 204
    assert plan(db, user_id) == [None]
    response = client.patch(f"/v1/users/{user_id}/preferences", headers=AUTH,
                            json={"categories": {"marketing": False}})
    assert response.status_code == 200
    assert response.get_json()["categories"] == {"marketing": False}
    assert response.get_json()["devices"] == {"phone": {"platform": "ios",
                                                        "notification_enabled": True}}
    assert plan(db, user_id, categoryType="marketing") == [Reason.CATEGORY_OPTED_OUT]
    assert plan(db, user_id, categoryType="delivery") == [None]
    [event] = [e for e in pull_events(changes_subscription) if e["status"] == "preference_changed"]
    assert (event["user_id"], event["setting"], event["value"], event["sender_client"]) == \
        (user_id, "categories.marketing", "false", "crm")


@pytest.mark.parametrize("preferences, reasons", [
    ({"notification_enabled": False}, [Reason.USER_OPTED_OUT]),
    ({"channels": {"push": False}}, [Reason.CHANNEL_OPTED_OUT]),
    ({"devices": {"phone": {"notification_enabled": False}}}, [Reason.DEVICE_DISABLED]),
    ({"quiet_hours": {"start": "22:00", "end": "07:30"}}, [None]),
])
def test_each_switch_is_the_field_the_planner_reads(client, db, user_id, preferences,
                                                    reasons) -> None:
    client.put(f"/v1/users/{user_id}/devices/phone", headers=AUTH,
               json={"platform": "android", "token": f"tok-{user_id}"})
    response = client.patch(f"/v1/users/{user_id}/preferences", headers=AUTH, json=preferences)
    assert response.status_code == 200, response.get_json()
    assert plan(db, user_id) == reasons


def test_null_switches_back_on_and_quiet_hours_sit_beside_the_timezone(client, db,
                                                                       user_id) -> None:
    client.patch(f"/v1/users/{user_id}/preferences", headers=AUTH,
                 json={"notification_enabled": False, "quiet_hours": {"start": "22:00",
                                                                      "end": "07:00"}})
    client.patch(f"/v1/users/{user_id}/preferences", headers=AUTH,
                 json={"notification_enabled": None})
    stored = users.user_ref(db, user_id).get().to_dict()
    assert "notification_enabled" not in stored
    assert (stored["timezone"], stored["quiet_hours"]) == ("Asia/Seoul",
                                                           {"start": "22:00", "end": "07:00"})


def test_a_token_registered_again_moves_to_the_new_device(client, db, user_id,
                                                          changes_subscription) -> None:
    other = f"{user_id}-b"
    client.put(f"/v1/users/{other}", headers=AUTH, json={})
    token = f"shared-{user_id}"
    client.put(f"/v1/users/{user_id}/devices/tablet", headers=AUTH,
               json={"platform": "android", "token": token})
    pull_events(changes_subscription)
    assert client.put(f"/v1/users/{other}/devices/tablet", headers=AUTH,
                      json={"platform": "android", "token": token}).status_code == 204
    assert not users.device_ref(db, user_id, "tablet").get().exists
    assert users.device_ref(db, other, "tablet").get().to_dict()["token"] == token
    assert users.token_ref(db, token).get().to_dict() == {"user_id": other, "device_id": "tablet"}
    assert {(e["user_id"], e["setting"], e["value"]) for e in pull_events(changes_subscription)} \
        == {(other, "devices.tablet", '{"platform": "android"}'),
            (user_id, "devices.tablet", None)}
    # A device's new token frees its old one.
    client.put(f"/v1/users/{other}/devices/tablet", headers=AUTH,
               json={"platform": "android", "token": f"{token}-2"})
    assert not users.token_ref(db, token).get().exists


def test_logout_and_erasure(client, db, user_id, changes_subscription) -> None:
    token = f"tok-{user_id}"
    client.put(f"/v1/users/{user_id}/devices/phone", headers=AUTH,
               json={"platform": "web", "token": token})
    assert client.put(f"/v1/users/{user_id}/topics/news", headers=AUTH).status_code == 204
    assert users.user_ref(db, user_id).get().to_dict()["topics"] == ["news"]
    assert client.delete(f"/v1/users/{user_id}/devices/phone", headers=AUTH).status_code == 204
    assert not users.token_ref(db, token).get().exists
    assert plan(db, user_id) == [Reason.NO_ADDRESS]
    client.put(f"/v1/users/{user_id}/devices/phone", headers=AUTH,
               json={"platform": "web", "token": token})
    assert client.delete(f"/v1/users/{user_id}", headers=AUTH).status_code == 204
    assert not users.user_ref(db, user_id).get().exists
    assert list(users.user_ref(db, user_id).collection(users.DEVICES).stream()) == []
    assert not users.token_ref(db, token).get().exists
    assert plan(db, user_id) == [Reason.UNKNOWN_USER]
    for method, path in [("get", ""), ("delete", ""), ("put", "/topics/news"),
                         ("patch", "/preferences")]:
        response = getattr(client, method)(f"/v1/users/{user_id}{path}", headers=AUTH,
                                           json={"notification_enabled": True})
        assert response.status_code == 404
        assert response.get_json()["error"]["message"].startswith("unknown_user")
    changes = sorted((e["setting"], e["value"] or "") for e in pull_events(changes_subscription))
    registered = '{"platform": "web"}'
    assert changes == [("devices.phone", ""), ("devices.phone", registered),
                       ("devices.phone", registered), ("topics.news", "true"), ("user", "")]


@pytest.mark.parametrize("path, body, field", [
    ("", {"phone": "010-1234-5678"}, "phone"),
    ("", {"phone": "+0123"}, "phone"),
    ("", {"email": "not-an-address"}, "email"),
    ("", {"timezone": "Mars/Olympus"}, "timezone"),
    ("", {"timezone": "../../etc/passwd"}, "timezone"),
    ("", {"locale": "korean please"}, "locale"),
    ("", {"nickname": "ana"}, "nickname"),
    ("", [], "body"),
    ("/devices/d1", {"platform": "windows", "token": "t"}, "platform"),
    ("/devices/d1", {"platform": "ios"}, "token"),
    ("/devices/__d__", {"platform": "ios", "token": "t"}, "deviceId"),
    ("/preferences", {"channels": {"fax": False}}, "channels.fax"),
    ("/preferences", {"categories": {"marketing": "no"}}, "categories.marketing"),
    ("/preferences", {"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
    ("/preferences", {"devices": {"d1": {"muted": True}}}, "devices.d1.muted"),
    ("/preferences", {}, "body"),
    ("/topics/news!", None, "topic"),  # FCM's topic characters only
    ("/topics/__all__", None, "topic"),
])
def test_bad_input_is_400_naming_the_field(client, user_id, path, body, field) -> None:
    method = client.patch if path == "/preferences" else client.put
    response = method(f"/v1/users/{user_id}{path}", headers=AUTH, json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == field


def test_routes_ids_and_authentication(client, user_id) -> None:
    assert client.get(f"/v1/users/{user_id}").status_code == 401
    assert client.get(f"/v1/users/{user_id}", headers={"Authorization": "Bearer no"}) \
        .status_code == 401
    assert client.post(f"/v1/users/{user_id}", headers=AUTH).status_code == 405
    assert client.get(f"/v1/users/{user_id}/nothing", headers=AUTH).status_code == 404
    response = client.put("/v1/users/__reserved__", headers=AUTH, json={})
    assert (response.status_code, response.get_json()["error"]["field"]) == (400, "userId")
    response = client.patch(f"/v1/users/{user_id}/preferences", headers=AUTH,
                            json={"devices": {"ghost": {"notification_enabled": False}}})
    assert (response.status_code, response.get_json()["error"]["field"]) == (404, "devices.ghost")
    response = client.put(f"/v1/users/{user_id}", headers=AUTH, data="{nope",
                          content_type="application/json")
    assert (response.status_code, response.get_json()["error"]["field"]) == (400, "body")


def test_an_unrecordable_change_is_503_and_saved(make_app, db) -> None:
    from herald.local.processes import free_port

    client = make_app(PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
                      HERALD_PUBLISH_TIMEOUT_S="0.5").test_client()
    user = f"u-{uuid.uuid4().hex[:8]}"
    response = client.put(f"/v1/users/{user}", headers=AUTH, json={"locale": "en"})
    assert (response.status_code, response.get_json()["error"]["field"]) == (503, "events")
    assert users.user_ref(db, user).get().to_dict() == {"locale": "en"}
    json.dumps(response.get_json())


def test_templates_are_stored_and_checked_at_the_edge(client) -> None:
    template = f"shipped-{uuid.uuid4().hex[:6]}"
    body = {k: v for k, v in DESIGN_BODY.items() if k != "notificationId"}
    templated = {**body, "templateType": template, "notificationInfo": {"variables": {}}}
    response = client.post("/v1/notifications", headers=AUTH, json=templated)
    assert (response.status_code, response.get_json()["error"]["field"]) == (400, "templateType")
    response = client.put(f"/v1/templates/{template}/en", headers=AUTH, json={
        "title": "Order {{ orderId }}", "content": "Hi {{ name }}"})
    assert response.status_code == 200
    assert response.get_json() == {"templateType": template, "locale": "en",
                                   "defaultLocale": "en", "variables": ["name", "orderId"]}
    response = client.post("/v1/notifications", headers=AUTH, json={
        **templated, "notificationInfo": {"variables": {"orderId": "A-17"}}})
    assert (response.status_code, response.get_json()["error"]["field"]) == \
        (400, "notificationInfo.variables")
    assert "name" in response.get_json()["error"]["message"]
    response = client.post("/v1/notifications", headers=AUTH, json={
        **templated, "notificationInfo": {"variables": {"orderId": "A-17", "name": "Ana"}}})
    assert response.status_code == 202
    assert client.post("/v1/notifications", headers=AUTH, json=body).status_code == 202  # inline


@pytest.mark.parametrize("path, body, field", [
    ("/v1/templates/t/en", {"title": "{{ x", "content": "c"}, "title"),
    ("/v1/templates/t/en", {"title": "t"}, "content"),
    ("/v1/templates/t/english please", {"title": "t", "content": "c"}, "locale"),
    ("/v1/templates/__t__/en", {"title": "t", "content": "c"}, "templateType"),
])
def test_bad_templates_are_400_naming_the_field(client, path, body, field) -> None:
    response = client.put(path, headers=AUTH, json=body)
    assert (response.status_code, response.get_json()["error"]["field"]) == (400, field)
