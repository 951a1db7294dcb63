"""A mixed sender workload through the real HTTP API: all channels, priorities, opt-outs, duplicates.

Used by `make demo`, the end-to-end tests and the benchmarks, so all three exercise the same mix.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import requests

from herald.contracts import Channel, Priority
from herald.local.seed import DEMO_CATEGORIES, HOUSEHOLDS, household

SERVICES = ("orders", "accounts", "news", "alerts")
TEMPLATES = {"delivery": "order_shipped", "account": "password_changed",
             "marketing": "weekly_digest", "security": "login_alert"}
DEVICE_TARGETS: tuple[str | None, ...] = (None, None, "iOS", "Android", "web", "desktop")
"""`metadata.deviceInfo` of request i is DEVICE_TARGETS[i % 6]: a third go to every device, the
rest to one platform each (in the case senders write it, "desktop" meaning web), so the demo
sends to every platform and exercises the targeting."""


@dataclass(frozen=True)
class Sent:
    """One request the API accepted (202), as the sender knows it."""

    body: dict[str, Any]
    trace_id: str


HOSTILE_VALUES: tuple[Any, ...] = (
    "auth0|acme/alice", ".", "..", "__users__", "u-\ud800", "", " ", None, 12, [], {},
    "x" * 100_000, "\x00", "ctrl\x07\x1b[31m", "\U0001F600", "' OR 1=1 --")
"""Values users of other notification systems reported breaking them: federated ids with
slashes, Firestore's reserved ids, lone surrogates, wrong types, huge, control characters."""
SENDER_FIELDS: tuple[tuple[str, ...], ...] = (
    ("userId",), ("userIds",), ("notificationId",), ("serviceType",), ("categoryType",),
    ("notificationType",), ("templateType",), ("priority",), ("notificationInfo",),
    ("notificationInfo", "title"), ("notificationInfo", "content"), ("notificationInfo", "data"),
    ("metadata",), ("metadata", "deviceInfo"), ("metadata", "sendTime"))
"""Every field of the request contract a sender controls, as a path into the body."""


def hostile_variant(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `body` with the field at `path` set to `value` (for `userIds`: a bulk request
    with a valid user and `value`)."""
    variant = json.loads(json.dumps(body))
    target = variant
    for key in path[:-1]:
        target = target[key]
    if path == ("userIds",):
        variant.pop("userId", None)
        value = [body.get("userId", "user-00001"), value]
    target[path[-1]] = value
    return variant


ENVELOPE_FIELDS = ("traceId", "senderClient", "acceptedAt")
"""The fields the edge adds to a published request (herald.contracts.Envelope)."""


def hostile_messages(envelope: dict[str, Any]) -> list[bytes]:
    """Message data for the requests topic as if published by other means than the edge: the
    decoded `envelope` (Envelope.to_pubsub's data) with each sender field, then each envelope
    field, set to each hostile value; each with a trace id of its own."""
    variants = [{**envelope, "request": hostile_variant(envelope["request"], path, value),
                 "traceId": f"hostile-{'.'.join(path)}-{index}"}
                for path in SENDER_FIELDS for index, value in enumerate(HOSTILE_VALUES)]
    variants += [hostile_variant({**envelope, "traceId": f"hostile-{field}-{index}"},
                                 (field,), value)
                 for field in ENVELOPE_FIELDS for index, value in enumerate(HOSTILE_VALUES)]
    return [json.dumps(variant).encode() for variant in variants]


def _bulk_audience(rng: random.Random, users: int) -> list[str]:
    """2 to 8 users, with a household sharing its contacts and a device half the time."""
    audience = rng.sample([f"user-{n:05d}" for n in range(users)], rng.randint(2, min(8, users)))
    if rng.random() < 0.5:
        audience += household(rng.randrange(HOUSEHOLDS))
    return audience


def make_requests(count: int, users: int, *, seed: int = 7, duplicate_rate: float = 0.05,
                  unknown_user_rate: float = 0.01, bulk_rate: float = 0.0) -> list[dict[str, Any]]:
    """Deterministic request bodies; `duplicate_rate` of them repeat an earlier notificationId
    (a sender retrying), `unknown_user_rate` address users that do not exist, `bulk_rate` are
    bulk requests (`userIds`) whose users share device ids and, half of them, contact details."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for index in range(count):
        if bodies and rng.random() < duplicate_rate:
            bodies.append(dict(rng.choice(bodies)))
            continue
        bulk = _bulk_audience(rng, users) if bulk_rate and rng.random() < bulk_rate else None
        category = rng.choice(DEMO_CATEGORIES)
        channel = rng.choices(list(Channel), weights=(10, 1, 5))[0]  # the design's daily mix
        user = (f"ghost-{index:05d}" if rng.random() < unknown_user_rate
                else f"user-{rng.randrange(users):05d}")
        bodies.append({
            **({"userIds": bulk} if bulk else {"userId": user}),
            "notificationId": f"n-{seed}-{index:06d}",
            "serviceType": rng.choice(SERVICES),
            "categoryType": category,
            "notificationType": channel.value,
            "templateType": TEMPLATES[category],
            "priority": (Priority.HIGH if category == "security" else
                         rng.choice((Priority.NORMAL, Priority.LOW))).value,
            "notificationInfo": {"title": f"{category} update", "content": f"Message {index}"},
            "metadata": {"sendTime": "2024-02-05T12:00:00Z",
                         **({"deviceInfo": target} if (target := DEVICE_TARGETS[index % len(
                             DEVICE_TARGETS)]) else {})},
        })
    return bodies


def send_all(api_url: str, api_key: str, bodies: list[dict[str, Any]], *, concurrency: int = 16,
             on_done: Callable[[], None] | None = None) -> list[Sent]:
    """POST every body concurrently; returns the accepted ones. Any non-202 is an error here,
    because the workload is valid by construction."""
    local = threading.local()

    def post(body: dict[str, Any]) -> Sent:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {api_key}"
        response = session.post(f"{api_url}/v1/notifications", json=body, timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f"{response.status_code} from the API: {response.text}")
        if on_done:
            on_done()
        return Sent(body, response.json()["traceId"])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(post, bodies))
