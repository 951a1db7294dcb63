"""The OpenAPI description agrees with the code: the stored file is current and served; its request
schemas accept exactly what herald's parsers accept on a table of bodies; every answer the function
gives in a walk through every endpoint fits it; and schemathesis, fuzzing the function started with
functions-framework on the real emulators, finds no 5xx and no answer that breaks it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from functions_framework import create_app
from google.cloud import pubsub_v1
from jsonschema import Draft202012Validator
from werkzeug.routing import Map, Rule

from herald import users
from herald.contracts import ContractError, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.local.processes import Service, free_port, http_ready, start, stop_group
from herald.sandbox import SendGridSigner
from herald.templates import parse_translation
from ingest_function import openapi

PROJECT = "herald-openapi-test"
SOURCE = Path(__file__).with_name("main.py")
KEY = "openapi-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCUMENT = openapi.build()
pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


def validator(pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` in the document, its $refs resolved in it."""
    return Draft202012Validator({**DOCUMENT, "$ref": pointer})


def schema_valid(name: str, body: Any) -> bool:
    return validator(f"#/components/schemas/{name}").is_valid(body)


def test_the_stored_description_is_current_and_served(client) -> None:
    assert openapi.PATH.read_text() == openapi.render(), "run `herald schema --write`"
    Draft202012Validator.check_schema({**DOCUMENT["components"]["schemas"]["Preferences"]})
    response = client.get("/openapi.json")
    assert (response.status_code, response.get_json()) == (200, DOCUMENT)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(DESIGN_BODY)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


NOTIFICATION_BODIES = [
    DESIGN_BODY,
    _with(("userId",), ...),
    {**_with(("userId",), ...), "userIds": ["a", "b"]},
    {**DESIGN_BODY, "userIds": ["a"]},
    {**_with(("userId",), ...), "userIds": []},
    {**_with(("userId",), ...), "userIds": ["a", "a"]},
    {**_with(("userId",), ...), "userIds": [f"u{i}" for i in range(1001)]},
    _with(("userId",), "a/b"), _with(("userId",), "__x__"), _with(("userId",), ".."),
    _with(("userId",), "__x"), _with(("userId",), "   "), _with(("userId",), "x" * 257),
    _with(("notificationType",), "fax"), _with(("priority",), "urgent"),
    _with(("priority",), "high"), _with(("serviceType",), ""), _with(("templateType",), ...),
    _with(("notificationInfo",), {}), _with(("notificationInfo",), {"title": "t"}),
    _with(("notificationInfo",), {"variables": {"orderId": "A-17", "n": 2, "ok": True}}),
    _with(("notificationInfo",), {"variables": {"order id": "A"}}),
    _with(("notificationInfo",), {"variables": {"order": {"id": 1}}}),
    _with(("notificationInfo",), {"variables": [1]}),
    _with(("notificationInfo", "data"), {"k": 1}), _with(("notificationInfo", "data"), {"k": "v"}),
    _with(("notificationInfo", "title"), "x" * 1025), _with(("metadata",), "m"),
    "not an object", [DESIGN_BODY],
]


@pytest.mark.parametrize("body", NOTIFICATION_BODIES)
def test_the_request_schema_agrees_with_the_contract(body) -> None:
    try:
        parse_request(body)
        accepted = True
    except ContractError:
        accepted = False
    assert schema_valid("NotificationRequest", body) == accepted


def _accepts(parser: Callable[[Any], Any], body: Any) -> bool:
    try:
        parser(body)
    except ContractError:
        return False
    return True


@pytest.mark.parametrize("name, parser, body", [
    ("Contacts", users.parse_contacts, {"email": "a@example.com", "phone": "+15551234567",
                                        "locale": "zh-Hant-TW", "timezone": "Asia/Seoul"}),
    ("Contacts", users.parse_contacts, {}),
    ("Contacts", users.parse_contacts, {"phone": "+0123"}),
    ("Contacts", users.parse_contacts, {"phone": "5551234567"}),
    ("Contacts", users.parse_contacts, {"locale": "ko_KR"}),
    ("Contacts", users.parse_contacts, {"nickname": "x"}),
    ("Contacts", users.parse_contacts, {"email": None}),
    ("DeviceRegistration", users.parse_device, {"platform": "ios", "token": "t"}),
    ("DeviceRegistration", users.parse_device, {"platform": "windows", "token": "t"}),
    ("DeviceRegistration", users.parse_device, {"platform": "ios"}),
    ("DeviceRegistration", users.parse_device, {"platform": "ios", "token": "t", "x": 1}),
    ("Preferences", users.parse_preferences, {"notification_enabled": False}),
    ("Preferences", users.parse_preferences, {"notification_enabled": "no"}),
    ("Preferences", users.parse_preferences, {}),
    ("Preferences", users.parse_preferences, {"categories": {"marketing": None}}),
    ("Preferences", users.parse_preferences, {"categories": {"a/b": False}}),
    ("Preferences", users.parse_preferences, {"channels": {"sms": False, "push": True}}),
    ("Preferences", users.parse_preferences, {"channels": {"fax": False}}),
    ("Preferences", users.parse_preferences, {"devices": {"d1": {"notification_enabled": False}}}),
    ("Preferences", users.parse_preferences, {"devices": {"d1": {"muted": True}}}),
    ("Preferences", users.parse_preferences, {"quiet_hours": {"start": "22:00", "end": "07:00"}}),
    ("Preferences", users.parse_preferences, {"quiet_hours": {"start": "24:00", "end": "07:00"}}),
    ("Preferences", users.parse_preferences, {"quiet_hours": {"start": "22:00"}}),
    ("Preferences", users.parse_preferences, {"quiet_hours": None}),
    ("TemplateTranslation", parse_translation, {"title": "t", "content": "c", "default": True}),
    ("TemplateTranslation", parse_translation, {"title": "t"}),
    ("TemplateTranslation", parse_translation, {"title": "t", "content": "c", "data": {"k": 1}}),
    ("TemplateTranslation", parse_translation, {"title": "t", "content": "c", "html": "x"}),
])
def test_the_registry_schemas_agree_with_their_parsers(name, parser, body) -> None:
    assert schema_valid(name, body) == _accepts(parser, body)


# --- every answer fits the description -------------------------------------------------------------

_PATHS = Map([Rule(path.replace("{", "<").replace("}", ">"), endpoint=path)
              for path in DOCUMENT["paths"]], strict_slashes=False)


class CheckedClient:
    """A test client whose every response is checked against the description: the status is
    documented for the operation, and the JSON body fits its schema."""

    def __init__(self, client) -> None:
        self._client = client
        self.checked: set[tuple[str, str, int]] = set()

    def __getattr__(self, method: str):
        def call(path: str, **kwargs: Any):
            response = getattr(self._client, method)(path, **kwargs)
            template, _ = _PATHS.bind("").match(path.split("?")[0])
            operation = DOCUMENT["paths"][template].get(method)
            status = str(response.status_code)
            if operation is None:  # a method the path does not take
                assert status in ("404", "405"), (method, path, status)
                return response
            assert status in operation["responses"], (method, path, status, response.data)
            content = operation["responses"][status].get("content")
            if content is not None:
                escaped = template.replace("~", "~0").replace("/", "~1")
                pointer = (f"#/paths/{escaped}/{method}/responses/{status}/content/"
                           "application~1json/schema")
                errors = [e.message for e in validator(pointer).iter_errors(response.get_json())]
                assert not errors, (method, path, status, errors)
            self.checked.add((template, method, response.status_code))
            return response
        return call


@pytest.fixture(scope="module")
def topics(pubsub_emulator: str) -> None:
    publisher = pubsub_v1.PublisherClient()
    for topic in ("notification-requests", "notification-callbacks"):
        publisher.create_topic(name=f"projects/{PROJECT}/topics/{topic}")


def environment(pubsub_emulator: str, firestore_emulator: str) -> dict[str, str]:
    return {"HERALD_PROJECT": PROJECT, "HERALD_API_KEYS": f"{KEY}:openapi",
            "PUBSUB_EMULATOR_HOST": pubsub_emulator, "FIRESTORE_EMULATOR_HOST": firestore_emulator,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": SendGridSigner.generate().public_key}


@pytest.fixture
def client(topics, pubsub_emulator, firestore_emulator, monkeypatch) -> CheckedClient:
    for name, value in environment(pubsub_emulator, firestore_emulator).items():
        monkeypatch.setenv(name, value)
    return CheckedClient(create_app(target="notifications", source=str(SOURCE)).test_client())


def test_every_answer_in_a_walk_through_every_endpoint_fits(client) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    base = f"/v1/users/{user}"
    client.get("/healthz")
    client.get(base, headers=AUTH)                                            # 404 unknown_user
    client.put(base, headers=AUTH, json={"email": "a@example.com", "locale": "ko-KR"})  # 201
    client.put(base, headers=AUTH, json={"email": "a@example.com", "timezone": "Asia/Seoul"})
    client.put(base, headers=AUTH, json={"phone": "123"})                     # 400
    client.put(base, json={})                                                 # 401
    client.post(base, headers=AUTH)                                           # 405
    client.put(f"{base}/devices/phone", headers=AUTH, json={"platform": "ios", "token": user})
    client.put(f"{base}/devices/phone", headers=AUTH, json={"platform": "fax", "token": "t"})
    client.patch(f"{base}/preferences", headers=AUTH, json={
        "categories": {"marketing": False}, "devices": {"phone": {"notification_enabled": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00"}})
    client.patch(f"{base}/preferences", headers=AUTH, json={"devices": {"tv": {}}})  # 404
    client.put(f"{base}/topics/news", headers=AUTH)
    client.get(base, headers=AUTH)
    client.delete(f"{base}/topics/news", headers=AUTH)
    client.delete(f"{base}/devices/phone", headers=AUTH)
    client.put("/v1/templates/shipped/en", headers=AUTH, json={"title": "{{ orderId }}",
                                                                "content": "c"})
    client.put("/v1/templates/shipped/en", headers=AUTH, json={"title": "{{ x"})  # 400
    client.post("/v1/notifications", headers=AUTH, json={**DESIGN_BODY, "userId": user})
    client.post("/v1/notifications", headers=AUTH, json={
        **DESIGN_BODY, "templateType": "shipped", "notificationInfo": {}})      # 400
    client.post("/v1/notifications", headers=AUTH, data=b"x" * 70_000,
                content_type="application/json")                              # 413
    client.get("/v1/notifications", headers=AUTH)                             # 405
    client.post("/v1/callbacks/twilio", data={"MessageSid": "SM1"})           # 401
    client.post("/v1/callbacks/sendgrid", json=[])                            # 401
    client.delete(base, headers=AUTH)
    client.delete(base, headers=AUTH)                                          # 404
    client.get("/openapi.json")
    operations = {(path, method) for path, item in DOCUMENT["paths"].items()
                  for method in item if method != "parameters"}
    assert {(path, method) for path, method, _ in client.checked} == operations


# --- schemathesis against the running function --------------------------------------------------------

SCHEMATHESIS_EXAMPLES = 5
"""Examples per operation and phase: bounded so `make test` stays quick on two cores."""


@pytest.fixture
def running_function(topics, pubsub_emulator, firestore_emulator,
                     tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **environment(pubsub_emulator, firestore_emulator),
           "PYTHONPATH": str(SOURCE.parents[1])}
    process = start(Service(
        "ingest-function", [str(Path(sys.executable).with_name("functions-framework")),
                            "--target=notifications", f"--source={SOURCE}", f"--port={port}",
                            "--host=127.0.0.1"],
        http_ready(f"http://127.0.0.1:{port}/healthz"), env=env), tmp_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process.pid)


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_description(
        running_function: str, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    if not schemathesis.exists():
        pytest.skip("schemathesis is not installed: pip install -e '.[dev]'")
    run = subprocess.run(
        [str(schemathesis), "run", f"{running_function}/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", "13",
         "--header", f"Authorization: Bearer {KEY}", "--request-timeout", "30",
         "--generation-database", "none"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
