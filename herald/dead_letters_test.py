"""Dead letters keep the original message whole: a delivery's dead letter holds its request's exact
bytes and its span, survives the trip through the dead-letter topic, replays scoped to that one
span under its own id (a poison message replays as it came), and becomes a `dead_letters` row."""

from __future__ import annotations

import dataclasses
import json

from herald.contracts import Envelope, Scope, new_envelope, parse_request
from herald.contracts_test import DESIGN_BODY
from herald.dead_letters import DEAD_LETTER_FIELDS, DeadLetter

TOPIC = "notification-requests"
SPAN = "span-1"


def envelope(**scope: object) -> Envelope:
    return dataclasses.replace(new_envelope(parse_request(DESIGN_BODY), "orders-svc"),
                               scope=Scope(**scope))


def test_a_delivery_keeps_its_requests_bytes_and_its_span() -> None:
    parked = envelope()
    dead_letter = DeadLetter.of_delivery(TOPIC, parked, SPAN, "retries_exhausted", attempts=4)
    assert (dead_letter.data, dict(dead_letter.attributes)) == parked.to_pubsub()
    assert (dead_letter.span_id, dead_letter.attempts) == (SPAN, 4)


def test_a_scoped_delivery_keeps_the_bytes_of_its_request_as_first_published() -> None:
    scoped = envelope(skip_spans=frozenset({"other"}), only_span=SPAN, replay_id="r-1")
    dead_letter = DeadLetter.of_delivery(TOPIC, scoped, SPAN, "retries_exhausted")
    assert dead_letter.data == dataclasses.replace(scoped, scope=Scope()).to_pubsub()[0]
    assert dead_letter.attributes["replay_id"] == "r-1"
    assert not {"skip_spans", "only_span"} & set(dead_letter.attributes)


def test_the_dead_letter_topic_message_round_trips() -> None:
    dead_letter = DeadLetter.of_delivery(TOPIC, envelope(), SPAN, "outcome_unknown")
    data, attributes = dead_letter.to_pubsub()
    assert {"dlq_id", "dlq_reason", "dlq_source_topic", "dlq_span_id"} <= set(attributes)
    assert attributes["dlq_id"] == dead_letter.dead_letter_id
    read = DeadLetter.from_pubsub(data, attributes)
    assert not any(key.startswith("dlq_") for key in read.attributes)
    assert read == dataclasses.replace(dead_letter, attributes=dict(dead_letter.attributes))
    assert read.dead_letter_id == dead_letter.dead_letter_id


def test_a_delivery_replays_scoped_to_its_span_under_its_own_id() -> None:
    dead_letter = DeadLetter(TOPIC, "retries_exhausted", b"\x00exact bytes\xff",
                             {"trace_id": "t-1", "channel": "sms",
                              "only_span": "old", "replay_id": "old-replay"}, span_id=SPAN)
    topic, data, attributes = dead_letter.replay()
    assert (topic, data) == (TOPIC, b"\x00exact bytes\xff")
    assert attributes == {"trace_id": "t-1", "channel": "sms", "only_span": SPAN,
                          "replay_id": dead_letter.dead_letter_id}


def test_a_poison_message_replays_unchanged() -> None:
    attributes = {"channel": "sms", "only_span": "a"}
    dead_letter = DeadLetter(TOPIC, "invalid_message", b"{not json", attributes)
    assert dead_letter.replay() == (TOPIC, b"{not json", attributes)


def test_the_id_is_deterministic_and_new_for_an_item_parked_again_on_a_replay() -> None:
    first = envelope()
    again = dataclasses.replace(first, scope=Scope(only_span=SPAN, replay_id="r-1"))
    ids = [DeadLetter.of_delivery(TOPIC, parked, SPAN, "retries_exhausted").dead_letter_id
           for parked in (first, first, again)]
    assert ids[0] == ids[1] != ids[2]
    assert DeadLetter.of_delivery(TOPIC, first, "span-2", "retries_exhausted").dead_letter_id \
        != ids[0]
    poison = [DeadLetter(TOPIC, "invalid_message", body).dead_letter_id
              for body in (b"{a", b"{a", b"{b")]
    assert poison[0] == poison[1] != poison[2]


def test_the_row_has_the_tables_columns() -> None:
    dead_letter = DeadLetter.of_delivery(TOPIC, envelope(), SPAN, "retries_exhausted",
                                         detail="gave up", provider_code="30003", attempts=3)
    row = dead_letter.to_row()
    assert list(row) == [f.name for f in DEAD_LETTER_FIELDS]
    assert row["notification_id"] == DESIGN_BODY["notificationId"]
    assert (row["span_id"], row["reason"], row["provider_code"]) == (SPAN, "retries_exhausted",
                                                                     "30003")
    assert (row["channel"], row["sender_client"]) == ("push", "orders-svc")
    assert row["data"] == dead_letter.data.decode()
    assert json.loads(row["attributes"]) == dict(dead_letter.attributes)


def test_a_poison_row_replaces_invalid_utf8_and_has_no_notification_id() -> None:
    row = DeadLetter(TOPIC, "invalid_message", b"caf\xe9 {").to_row()
    assert row["data"] == "caf\ufffd {"
    assert (row["notification_id"], row["trace_id"], row["span_id"]) == (None, None, None)
    listed = DeadLetter(TOPIC, "invalid_message", b'["request"]').to_row()
    assert listed["notification_id"] is None
