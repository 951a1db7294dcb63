"""The request contract: the documented body shape parses, and every bad field is named."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from herald.contracts import (MAX_AUDIENCE, MAX_SEND_AHEAD, Audience, AudiencePage, Channel,
                              ContractError, Envelope, Platform, Priority, Release, Scope, Segment,
                              new_envelope, parse_request)

DESIGN_BODY = {
    "userId": "u-1", "notificationId": "n-1", "serviceType": "orders", "categoryType": "delivery",
    "notificationType": "push", "templateType": "order_shipped",
    "notificationInfo": {"title": "Shipped", "content": "Your parcel is on its way"},
    "metadata": {"deviceInfo": "iOS", "sendTime": "2024-02-05T12:00:00Z"},
}


def test_design_shape_parses_with_default_priority() -> None:
    request = parse_request(DESIGN_BODY)
    assert request.channel is Channel.PUSH
    assert request.priority is Priority.NORMAL
    assert request.send_time == "2024-02-05T12:00:00Z"
    assert request.to_json()["notificationInfo"] == DESIGN_BODY["notificationInfo"]


@pytest.mark.parametrize("device_info, platform", [
    ("iOS", Platform.IOS), ("IOS", Platform.IOS), ("android", Platform.ANDROID),
    ("Web", Platform.WEB), ("laptop", Platform.WEB), ("DESKTOP", Platform.WEB), (None, None),
])
def test_device_info_names_a_platform_in_any_case(device_info, platform) -> None:
    body = {**DESIGN_BODY, "metadata": {} if device_info is None else {"deviceInfo": device_info}}
    request = parse_request(body)
    assert request.target_platform is platform
    assert request.to_json()["metadata"].get("deviceInfo") == device_info  # kept as sent


def test_notification_id_is_generated_only_at_the_edge() -> None:
    body = {k: v for k, v in DESIGN_BODY.items() if k != "notificationId"}
    assert parse_request(body).notification_id
    with pytest.raises(ContractError) as error:
        parse_request(body, generate_id=False)
    assert error.value.field == "notificationId"


def test_ids_firestore_accepts_pass() -> None:
    for user_id in ("auth0|acme_alice", "a.b", "...", "__x", "x__", "\u00e9\u6f22\U0001F600", "a" * 256):
        assert parse_request({**DESIGN_BODY, "userId": user_id}).user_id == user_id


@pytest.mark.parametrize("path, value, field", [
    (("userId",), None, "userId"),
    (("userId",), "", "userId"),
    (("notificationType",), "pigeon", "notificationType"),
    (("priority",), "urgent!", "priority"),
    (("notificationInfo",), "text", "notificationInfo"),
    (("notificationInfo", "title"), None, "notificationInfo.title"),
    (("metadata", "sendTime"), "yesterday", "metadata.sendTime"),
    (("metadata", "deviceInfo"), "blackberry", "metadata.deviceInfo"),
    (("metadata", "deviceInfo"), "", "metadata.deviceInfo"),
    (("metadata", "sendTime"), "2024-02-05T12:00:00", "metadata.sendTime"),
    # Ids that cannot be Firestore document ids (issue 9: "auth0|acme/alice" stopped the pipeline).
    (("userId",), "auth0|acme/alice", "userId"),
    (("userId",), ".", "userId"),
    (("userId",), "..", "userId"),
    (("userId",), "__users__", "userId"),
    (("userId",), "\u00e9" * 200 + "/", "userId"),
    # Text no UTF-8 system downstream accepts.
    (("userId",), "u-\ud800", "userId"),
    (("notificationInfo", "title"), "Hi \udfff", "notificationInfo.title"),
    (("notificationInfo", "content"), "\ud83d", "notificationInfo.content"),
    (("serviceType",), "svc\udc00", "serviceType"),
    (("notificationInfo", "data"), {"k": "\ud800"}, "notificationInfo.data.k"),
    (("notificationInfo", "data"), {"\ud800": "v"}, "notificationInfo.data"),
    (("notificationInfo", "variables"), ["orderId"], "notificationInfo.variables"),
    (("notificationInfo", "variables"), {"order id": "A"}, "notificationInfo.variables"),
    (("notificationInfo", "variables"), {"order": {"id": 1}}, "notificationInfo.variables.order"),
    (("notificationInfo", "variables"), {"order": "\ud800"}, "notificationInfo.variables.order"),
])
def test_bad_fields_are_named(path: tuple[str, ...], value: object, field: str) -> None:
    body = copy.deepcopy(DESIGN_BODY)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(ContractError) as error:
        parse_request(body)
    assert error.value.field == field


def test_envelope_round_trips_through_pubsub_bytes() -> None:
    envelope = new_envelope(parse_request({**DESIGN_BODY, "priority": "high"}), "orders-svc")
    data, attributes = envelope.to_pubsub()
    assert attributes == {"channel": "push", "priority": "high", "trace_id": envelope.trace_id,
                          "sender_client": "orders-svc"}
    assert Envelope.from_pubsub(data) == envelope


def test_a_scoped_republish_carries_its_span_and_replay_id_as_attributes() -> None:
    envelope = new_envelope(parse_request(DESIGN_BODY), "orders-svc")
    republished = dataclasses.replace(envelope, scope=Scope(only_span="s3", replay_id="r-1"))
    data, attributes = republished.to_pubsub()
    assert data == envelope.to_pubsub()[0]
    assert (attributes["only_span"], attributes["replay_id"]) == ("s3", "r-1")
    assert Envelope.from_pubsub(data, attributes) == republished
    assert republished.claim_token == f"{envelope.trace_id}#r-1" != envelope.claim_token


def test_a_skip_list_of_a_whole_bulk_request_travels_in_the_data_not_in_an_attribute() -> None:
    envelope = new_envelope(parse_request(DESIGN_BODY), "orders-svc")
    ended = frozenset(f"{index:016x}" for index in range(MAX_AUDIENCE))
    republished = dataclasses.replace(envelope, scope=Scope(skip_spans=ended))
    data, attributes = republished.to_pubsub()
    assert max(len(value.encode()) for value in attributes.values()) <= 1024  # Pub/Sub's limit
    assert json.loads(data)["skipSpans"] == sorted(ended)
    assert Envelope.from_pubsub(data, attributes) == republished


@pytest.mark.parametrize("skip", ["s1,s2", [1, 2], {"s1": True}])
def test_a_skip_list_that_is_not_span_ids_is_refused(skip: object) -> None:
    data = json.loads(new_envelope(parse_request(DESIGN_BODY), "orders-svc").to_pubsub()[0])
    with pytest.raises(ContractError) as refused:
        Envelope.from_pubsub(json.dumps({**data, "skipSpans": skip}).encode())
    assert refused.value.field == "skipSpans"


@pytest.mark.parametrize("scope, covered", [
    (Scope(), {"s1", "s2", "s3"}),
    (Scope(skip_spans=frozenset({"s1"})), {"s2", "s3"}),
    (Scope(only_span="s2"), {"s2"}),
])
def test_a_scope_covers_what_it_names(scope: Scope, covered: set[str]) -> None:
    assert {span for span in ("s1", "s2", "s3") if scope.covers(span)} == covered


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"request": {}}', b"\xff\xfe"])
def test_malformed_messages_raise_contract_errors(data: bytes) -> None:
    with pytest.raises(ContractError):
        Envelope.from_pubsub(data)


def test_a_bulk_request_names_its_audience_in_user_ids() -> None:
    body = {**{k: v for k, v in DESIGN_BODY.items() if k != "userId"}, "userIds": ["u-1", "u-2"]}
    request = parse_request(body)
    assert (request.user_id, request.recipient_ids) == (None, ("u-1", "u-2"))
    assert parse_request(request.to_json()) == request
    assert parse_request(DESIGN_BODY).recipient_ids == ("u-1",)


@pytest.mark.parametrize("audience, field", [
    ({"userIds": []}, "userIds"),
    ({"userIds": [f"u-{i}" for i in range(1001)]}, "userIds"),
    ({"userIds": ["u-1", "u-1"]}, "userIds"),
    ({"userIds": ["u-1", 7]}, "userIds[1]"),
    ({"userIds": ["u-1", "auth0|acme/alice"]}, "userIds[1]"),
    ({"userIds": ["__x__"]}, "userIds[0]"),
    ({"userIds": ["u-1", "u-\ud800"]}, "userIds[1]"),
    ({"userIds": "u-1"}, "userIds"),
    ({"userIds": ["u-1"], "userId": "u-2"}, "userIds"),
])
def test_a_bad_audience_names_the_field(audience: dict, field: str) -> None:
    body = {**{k: v for k, v in DESIGN_BODY.items() if k != "userId"}, **audience}
    with pytest.raises(ContractError) as error:
        parse_request(body)
    assert error.value.field == field


def _info(title: str = "T", content: str = "C", **data: str) -> dict:
    return {"title": title, "content": content, **({"data": data} if data else {})}


# Herald's own data keys and values (notification_id: "n-1", span_id: 16 hex, receipt: a 71-character
# token, herald/receipts.py) cost 15 + 3 + 7 + 16 + 7 + 71 = 119 bytes of a push's 4,096.
PUSH_ROOM = 4096 - 119 - len("T")


@pytest.mark.parametrize(("channel", "info", "field"), [
    ("push", _info(content="é" * 1900 + "x" * (PUSH_ROOM - 3800 + 1)), "notificationInfo"),
    ("push", _info(content="x" * (PUSH_ROOM - 4), ab="xxx"), "notificationInfo"),  # data counts
    ("push", _info(**{"from": "x"}), "notificationInfo.data.from"),
    ("push", _info(message_type="x"), "notificationInfo.data.message_type"),
    ("push", _info(**{"google.c.a": "x"}), "notificationInfo.data.google.c.a"),
    ("push", _info(gcm_notification="x"), "notificationInfo.data.gcm_notification"),
    ("sms", _info(title="Hi", content="x" * (1600 - 3)), "notificationInfo.content"),
])
def test_what_the_provider_would_refuse_is_refused_naming_the_field(channel, info, field) -> None:
    with pytest.raises(ContractError) as refused:
        parse_request({**DESIGN_BODY, "notificationType": channel, "notificationInfo": info})
    assert refused.value.field == field


@pytest.mark.parametrize(("channel", "info"), [
    ("push", _info(content="é" * 1900 + "x" * (PUSH_ROOM - 3800))),  # exactly 4,096 bytes
    ("push", _info(content="x" * (PUSH_ROOM - 4), ab="xx")),  # exactly 4,096 bytes again
    ("push", _info(collapse_key="x", fromage="x")),  # FCM allows these
    ("sms", _info(title="Hi", content="x" * (1600 - 4))),  # exactly 1,600 characters
    ("email", _info(content="x" * 20_000)),
])
def test_what_the_provider_takes_is_accepted(channel, info) -> None:
    parse_request({**DESIGN_BODY, "notificationType": channel, "notificationInfo": info})
def test_a_templated_request_has_no_inline_texts_and_round_trips() -> None:
    body = {**DESIGN_BODY, "notificationInfo": {"variables": {"orderId": "A-17", "count": 2}}}
    request = parse_request(body)
    assert request.templated and (request.title, request.content) == (None, None)
    assert request.variables == {"orderId": "A-17", "count": 2}
    envelope = new_envelope(request, "orders-svc")
    assert Envelope.from_pubsub(envelope.to_pubsub()[0]).request == request
    assert not parse_request(DESIGN_BODY).templated
    with pytest.raises(ContractError) as error:  # one inline text needs the other
        parse_request({**DESIGN_BODY, "notificationInfo": {"title": "Shipped"}})
    assert error.value.field == "notificationInfo.content"


def _at(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat().replace("+00:00", "Z")


def test_send_time_up_to_30_days_ahead_holds_the_envelope_until_then() -> None:
    ahead = new_envelope(parse_request(
        {**DESIGN_BODY, "metadata": {"sendTime": _at(MAX_SEND_AHEAD - timedelta(minutes=1))}}), "s")
    assert ahead.held_until == ahead.request.send_at
    assert new_envelope(parse_request(DESIGN_BODY), "s").held_until is None  # 2024: send now
    assert new_envelope(parse_request({**DESIGN_BODY, "metadata": {}}), "s").held_until is None
    released = dataclasses.replace(ahead, release=Release.DUE)
    assert released.held_until is None  # the outbox's release is never held again


def test_send_time_beyond_30_days_is_refused_naming_it() -> None:
    with pytest.raises(ContractError) as error:
        parse_request({**DESIGN_BODY,
                       "metadata": {"sendTime": _at(MAX_SEND_AHEAD + timedelta(minutes=1))}})
    assert error.value.field == "metadata.sendTime"
    assert "30 days" in error.value.message


@pytest.mark.parametrize("release", list(Release))
def test_a_release_travels_as_an_attribute_and_keeps_the_bytes(release: Release) -> None:
    envelope = new_envelope(parse_request(DESIGN_BODY), "orders-svc")
    data, attributes = dataclasses.replace(envelope, release=release).to_pubsub()
    assert data == envelope.to_pubsub()[0] and attributes["release"] == release.value
    assert Envelope.from_pubsub(data, attributes).release is release
    with pytest.raises(ContractError):
        Envelope.from_pubsub(data, {**attributes, "release": "later"})


def _audience_body(audience: object) -> dict:
    return {**{k: v for k, v in DESIGN_BODY.items() if k != "userId"}, "audience": audience}


@pytest.mark.parametrize("audience, expected", [
    ({"topic": "breaking-news_2024.v1~%20"}, Audience(topic="breaking-news_2024.v1~%20")),
    ({"segment": {"locale": "ko-KR"}}, Audience(segment=Segment(locale="ko-KR"))),
    ({"segment": {"timezone": "Asia/Seoul", "category": "marketing"}},
     Audience(segment=Segment(timezone="Asia/Seoul", category="marketing"))),
])
def test_an_audience_send_names_a_topic_or_a_segment(audience: dict, expected: Audience) -> None:
    request = parse_request(_audience_body(audience))
    assert (request.audience, request.user_id, request.user_ids) == (expected, None, ())
    assert parse_request(request.to_json()) == request


@pytest.mark.parametrize("body, field", [
    ({**DESIGN_BODY, "audience": {"topic": "news"}}, "audience"),
    ({**_audience_body({"topic": "news"}), "userIds": ["u-1"]}, "audience"),
    (_audience_body("news"), "audience"),
    (_audience_body({"topic": "news", "segment": {"locale": "ko"}}), "audience"),
    (_audience_body({"everyone": True}), "audience"),
    (_audience_body({"topic": "news/eu"}), "audience.topic"),
    (_audience_body({"topic": "news eu"}), "audience.topic"),
    (_audience_body({"topic": ".."}), "audience.topic"),
    (_audience_body({"topic": "__all__"}), "audience.topic"),
    (_audience_body({"topic": "n" * 257}), "audience.topic"),
    (_audience_body({"topic": ""}), "audience.topic"),
    (_audience_body({"segment": {}}), "audience.segment"),
    (_audience_body({"segment": {"country": "KR"}}), "audience.segment.country"),
    (_audience_body({"segment": {"locale": 7}}), "audience.segment.locale"),
    (_audience_body({"segment": {"category": "a/b"}}), "audience.segment.category"),
])
def test_a_bad_audience_send_names_its_field(body: dict, field: str) -> None:
    with pytest.raises(ContractError) as error:
        parse_request(body)
    assert error.value.field == field


def test_an_audience_page_travels_with_its_message_and_not_its_read_users() -> None:
    request = parse_request(_audience_body({"topic": "news"}))
    page = AudiencePage(number=3, cursor="user-02000", users_before=1990)
    envelope = dataclasses.replace(new_envelope(request, "crm"), page=page)
    assert new_envelope(request, "crm").audience_page == AudiencePage()
    assert Envelope.from_pubsub(*envelope.to_pubsub()) == envelope
    read = dataclasses.replace(envelope, request=dataclasses.replace(request, user_ids=("u-1",)))
    assert Envelope.from_pubsub(*read.to_pubsub()) == envelope
    assert new_envelope(parse_request(DESIGN_BODY), "crm").audience_page is None
