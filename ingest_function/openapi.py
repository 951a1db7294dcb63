"""The function's OpenAPI 3.1 description, built from the code that implements it.

Enumerations, limits and patterns come from their homes (herald.contracts, herald.users,
herald.templates), so a new channel or platform reaches the description by itself; the rest is
written here once. `herald schema --write` stores it as ingest_function/openapi.json (kept in the
repository, served at `GET /openapi.json`); openapi_test.py checks the stored file is current,
that every answer the function gives fits it, and that the request schema accepts exactly what
herald.contracts.parse_request accepts on a set of bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herald import users
from herald.contracts import (FCM_TOPIC, MAX_AUDIENCE, MAX_BODY_BYTES, MAX_NAME, SEGMENT_FILTERS,
                              Channel, Platform, Priority)
from herald.contracts import MAX_VARIABLES
from herald.templates import MAX_TEXT

PATH = Path(__file__).with_name("openapi.json")

_NON_BLANK = r"\S"
_ID = {"type": "string", "minLength": 1, "maxLength": 256,
       "pattern": r"^(?!__.*__$)(?!\.\.?$)[^/]*[^/\s][^/]*$",
       "description": "A Firestore document id: no '/', not '.' or '..', not __.*__."}


_PATH_ID = {**_ID, "pattern": r"^(?!__.*__$)(?!\.\.?$)[^/\x00-\x1f\x7f]*[^/\s][^/\x00-\x1f\x7f]*$",
            "description": _ID["description"] + " In a path, no control characters either: "
                           "functions-framework's router does not match them."}


_TOPIC = {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
          "pattern": rf"^(?!__.*__$)(?!\.\.?$){FCM_TOPIC.pattern}$",
          "description": "A topic name: the characters FCM allows (letters, digits, - _ . ~ %), "
                         "and a Firestore document id (not '.' or '..', not __.*__)."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_len: int = 256, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": _NON_BLANK, **extra}


def _switch(description: str) -> dict[str, Any]:
    return {"type": ["boolean", "null"], "description": description}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    why = {400: "A field breaks the contract; `error.field` names it.",
           401: "Missing or invalid credentials.",
           404: "No such route, user (`unknown_user`) or device.",
           405: "The path does not take this method.",
           409: "The idempotency key was used with another body in the last 24 h.",
           413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
           503: "A backing service (Pub/Sub, Firestore) is unavailable; retry."}
    return {str(status): _json(_ref("Error"), why[status]) for status in statuses}


_USER_ERRORS = (400, 401, 404, 405, 413, 503)


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _signature(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}


_LOCALE = {"type": "string", "pattern": f"^{users.BCP47.pattern}$", "maxLength": 256,
           "description": "A BCP 47 language tag, e.g. ko-KR."}
_USER_ID = _param("userId", _PATH_ID, "The app's user id.")


def _schemas() -> dict[str, Any]:
    channels = [c.value for c in Channel]
    scalar = {"type": ["string", "number", "boolean", "null"]}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}},
        "NotificationRequest": {
            "type": "object",
            "required": ["serviceType", "categoryType", "notificationType", "templateType",
                         "notificationInfo"],
            "oneOf": [{"required": [one], "not": {"anyOf": [
                {"required": [other]} for other in ("userId", "userIds", "audience")
                if other != one]}} for one in ("userId", "userIds", "audience")],
            "properties": {
                "userId": _ID,
                "userIds": {"type": "array", "items": _ID, "minItems": 1,
                            "maxItems": MAX_AUDIENCE, "uniqueItems": True},
                "audience": _ref("Audience"),
                "notificationId": _text(description="The sender's id; generated if absent."),
                "serviceType": _text(),
                "categoryType": _text(),
                "notificationType": {"enum": channels},
                "templateType": _text(),
                "priority": {"enum": [p.value for p in Priority], "default": "normal"},
                "notificationInfo": {
                    "type": "object",
                    "description": "title and content inline, or neither: the template named by "
                                   "templateType supplies them, rendered with `variables`.",
                    "dependentRequired": {"title": ["content"], "content": ["title"]},
                    "properties": {
                        "title": _text(1024),
                        "content": _text(32 * 1024),
                        "data": {"type": "object", "additionalProperties": {"type": "string"}},
                        "variables": {"type": "object", "maxProperties": MAX_VARIABLES,
                                      "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                                      "additionalProperties": scalar},
                    }},
                "metadata": {"type": "object", "properties": {
                    "deviceInfo": _text(),
                    "sendTime": _text(format="date-time",
                                      description="ISO 8601 with a time zone.")}},
            }},
        "Audience": {
            "type": "object", "minProperties": 1, "maxProperties": 1,
            "description": "An audience send: the users subscribed to `topic`, or a `segment`. "
                           "The pipeline reads them from Firestore in pages of up to "
                           f"{MAX_AUDIENCE} (one bulk batch each), all under the request's trace.",
            "properties": {
                "topic": _TOPIC,
                "segment": {
                    "type": "object", "minProperties": 1, "additionalProperties": False,
                    "description": "Users matching every filter given: `locale` and `timezone` "
                                   "equal to the user's, `category` not switched off by the user.",
                    "properties": {key: _ID if key == "category" else _text()
                                   for key in SEGMENT_FILTERS}}},
            "additionalProperties": False},
        "Accepted": {"type": "object", "required": ["notificationId", "traceId", "status"],
                     "properties": {"notificationId": {"type": "string"},
                                    "traceId": {"type": "string"},
                                    "status": {"const": "accepted"}}},
        "Contacts": {
            "type": "object", "additionalProperties": False,
            "description": "A PUT replaces the contacts; an absent one is removed.",
            "properties": {
                users.EMAIL: {"type": ["string", "null"], "format": "email"},
                users.PHONE: {"type": ["string", "null"], "pattern": f"^{users.E164.pattern}$",
                              "description": "E.164, e.g. +821012345678."},
                users.LOCALE: {**_LOCALE, "type": ["string", "null"]},
                users.TIMEZONE: {"type": ["string", "null"], "maxLength": 256,
                                 "description": "An IANA time zone, e.g. Asia/Seoul."}}},
        "Device": {"type": "object", "properties": {
            users.PLATFORM: {"type": "string"},
            users.NOTIFICATION_ENABLED: {"type": "boolean"},
            users.DISABLED_REASON: {"type": "string"},
            users.DISABLED_AT: {"type": "string"}}},
        "User": {
            "type": "object", "required": ["userId", users.DEVICES],
            "description": "The user document (herald/users.py) and its devices, tokens left out.",
            "properties": {
                "userId": {"type": "string"},
                **{key: {"type": "string"} for key in users.CONTACT_FIELDS},
                users.NOTIFICATION_ENABLED: {"type": "boolean"},
                users.CATEGORIES: {"type": "object"},
                users.CHANNELS: {"type": "object"},
                users.QUIET_HOURS: {"type": "object"},
                users.TOPICS: {"type": "array", "items": {"type": "string"}},
                users.DEVICES: {"type": "object", "additionalProperties": _ref("Device")}}},
        "DeviceRegistration": {
            "type": "object", "additionalProperties": False,
            "required": [users.PLATFORM, users.TOKEN],
            "properties": {users.PLATFORM: {"enum": [p.value for p in Platform]},
                           users.TOKEN: _text(users.MAX_TOKEN)}},
        "Preferences": {
            "type": "object", "additionalProperties": False, "minProperties": 1,
            "description": "Only the switches named change; null turns one back to the default "
                           "(on). The names are the document fields the pipeline reads.",
            "properties": {
                users.NOTIFICATION_ENABLED: _switch("Every notification."),
                users.CATEGORIES: {"type": "object", "propertyNames": _ID,
                                   "additionalProperties": _switch("One category.")},
                users.CHANNELS: {"type": "object", "additionalProperties": False,
                                 "properties": {c: _switch("One channel.") for c in channels}},
                users.DEVICES: {"type": "object", "propertyNames": _ID,
                                "additionalProperties": {
                                    "type": "object", "additionalProperties": False,
                                    "properties": {users.NOTIFICATION_ENABLED: _switch(
                                        "One device.")}}},
                users.QUIET_HOURS: {
                    "type": ["object", "null"], "additionalProperties": False,
                    "required": [users.QUIET_HOURS_START, users.QUIET_HOURS_END],
                    "description": "Local time in the user's timezone; stored, not yet acted on.",
                    "properties": {key: {"type": "string",
                                         "pattern": f"^{users.LOCAL_TIME.pattern}$"}
                                   for key in (users.QUIET_HOURS_START, users.QUIET_HOURS_END)}},
            }},
        "TemplateTranslation": {
            "type": "object", "additionalProperties": False, "required": ["title", "content"],
            "description": "Jinja2 (sandboxed) sources; email_html is autoescaped.",
            "properties": {
                "title": _text(MAX_TEXT), "content": _text(MAX_TEXT),
                "email_subject": {**_text(MAX_TEXT), "type": ["string", "null"]},
                "email_html": {**_text(MAX_TEXT), "type": ["string", "null"]},
                "data": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                "default": {"type": "boolean",
                            "description": "Make this locale the template's default."}}},
        "TemplateStored": {
            "type": "object", "required": ["templateType", "locale", "defaultLocale", "variables"],
            "properties": {"templateType": {"type": "string"}, "locale": {"type": "string"},
                           "defaultLocale": {"type": "string"},
                           "variables": {"type": "array", "items": {"type": "string"}}}},
    }


def build() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    no_content = {"204": {"description": "Done."}}
    user_path = "/v1/users/{userId}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Herald", "version": "1",
                 "description": "Notifications in, per-channel deliveries out; the user registry "
                                "and templates they use. Errors are `{\"error\": {\"field\", "
                                "\"message\"}}`."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key from HERALD_API_KEYS."}},
            "schemas": _schemas()},
        "paths": {
            "/healthz": {"get": {"security": [], "operationId": "health",
                                 "responses": {"200": _json({"type": "object"}, "Up.")}}},
            "/openapi.json": {"get": {"security": [], "operationId": "openapi",
                                      "responses": {"200": _json({"type": "object"},
                                                                 "This document.")}}},
            "/v1/notifications": {"post": {
                "operationId": "sendNotification",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "maxLength": 256}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("NotificationRequest")}}},
                "responses": {"202": _json(_ref("Accepted"), "Stored; published or in the "
                                           "outbox."), **_errors(400, 401, 405, 409, 413, 503)}}},
            user_path: {
                "parameters": [_USER_ID],
                "get": {"operationId": "getUser",
                        "responses": {"200": _json(_ref("User"), "The user."),
                                      **_errors(*_USER_ERRORS)}},
                "put": {"operationId": "putUser",
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": _ref("Contacts")}}},
                        "responses": {"200": _json(_ref("User"), "Updated."),
                                      "201": _json(_ref("User"), "Created."),
                                      **_errors(*_USER_ERRORS)}},
                "delete": {"operationId": "eraseUser",
                           "description": "Erasure: the user, its devices and their tokens.",
                           "responses": {**no_content, **_errors(*_USER_ERRORS)}}},
            f"{user_path}/devices/{{deviceId}}": {
                "parameters": [_USER_ID, _param("deviceId", _PATH_ID, "The app's device id.")],
                "put": {"operationId": "registerDevice",
                        "description": "A token registered to another device moves here.",
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": _ref("DeviceRegistration")}}},
                        "responses": {**no_content, **_errors(*_USER_ERRORS)}},
                "delete": {"operationId": "removeDevice",
                           "responses": {**no_content, **_errors(*_USER_ERRORS)}}},
            f"{user_path}/preferences": {
                "parameters": [_USER_ID],
                "patch": {"operationId": "setPreferences",
                          "requestBody": {"required": True, "content": {"application/json": {
                              "schema": _ref("Preferences")}}},
                          "responses": {"200": _json(_ref("User"), "The user after the change."),
                                        **_errors(*_USER_ERRORS)}}},
            f"{user_path}/topics/{{topic}}": {
                "parameters": [_USER_ID, _param("topic", _TOPIC, "A topic name.")],
                "put": {"operationId": "subscribe",
                        "responses": {**no_content, **_errors(*_USER_ERRORS)}},
                "delete": {"operationId": "unsubscribe",
                           "responses": {**no_content, **_errors(*_USER_ERRORS)}}},
            "/v1/callbacks/twilio": {"post": {
                "operationId": "twilioStatusCallback", "security": [],
                "description": "Twilio's status callback, verified by X-Twilio-Signature.",
                "parameters": [_signature("X-Twilio-Signature")],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
                "responses": {**no_content, **_errors(400, 401, 405, 413, 503)}}},
            "/v1/callbacks/sendgrid": {"post": {
                "operationId": "sendgridEventWebhook", "security": [],
                "description": "SendGrid's signed Event Webhook (ECDSA, "
                               "X-Twilio-Email-Event-Webhook-Signature and -Timestamp).",
                "parameters": [_signature("X-Twilio-Email-Event-Webhook-Signature"),
                               _signature("X-Twilio-Email-Event-Webhook-Timestamp")],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}}}}},
                "responses": {"200": _json({"type": "object", "required": ["published", "ignored"],
                                            "properties": {"published": {"type": "integer"},
                                                           "ignored": {"type": "integer"}}},
                                           "Published (and ignored) events."),
                              **_errors(400, 401, 405, 413, 503)}}},
            "/v1/templates/{templateType}/{locale}": {
                "parameters": [_param("templateType", _PATH_ID, "The requests' templateType."),
                               _param("locale", _LOCALE, "The translation's locale.")],
                "put": {"operationId": "putTemplate",
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": _ref("TemplateTranslation")}}},
                        "responses": {"200": _json(_ref("TemplateStored"), "Stored."),
                                      **_errors(*_USER_ERRORS)}}},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def write() -> Path:
    PATH.write_text(render())
    return PATH
