"""A mixed sender workload through the real HTTP API: all channels, priorities, opt-outs, duplicates.

Used by `make demo`, the end-to-end tests and the benchmarks, so all three exercise the same mix.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import requests

from herald.contracts import Channel, Priority
from herald.local.seed import DEMO_CATEGORIES

SERVICES = ("orders", "accounts", "news", "alerts")
TEMPLATES = {"delivery": "order_shipped", "account": "password_changed",
             "marketing": "weekly_digest", "security": "login_alert"}


@dataclass(frozen=True)
class Sent:
    """One request the API accepted (202), as the sender knows it."""

    body: dict[str, Any]
    trace_id: str


def make_requests(count: int, users: int, *, seed: int = 7, duplicate_rate: float = 0.05,
                  unknown_user_rate: float = 0.01) -> list[dict[str, Any]]:
    """Deterministic request bodies; `duplicate_rate` of them repeat an earlier notificationId
    (a sender retrying), `unknown_user_rate` address users that do not exist."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for index in range(count):
        if bodies and rng.random() < duplicate_rate:
            bodies.append(dict(rng.choice(bodies)))
            continue
        category = rng.choice(DEMO_CATEGORIES)
        channel = rng.choices(list(Channel), weights=(10, 1, 5))[0]  # the design's daily mix
        user = (f"ghost-{index:05d}" if rng.random() < unknown_user_rate
                else f"user-{rng.randrange(users):05d}")
        bodies.append({
            "userId": user,
            "notificationId": f"n-{seed}-{index:06d}",
            "serviceType": rng.choice(SERVICES),
            "categoryType": category,
            "notificationType": channel.value,
            "templateType": TEMPLATES[category],
            "priority": (Priority.HIGH if category == "security" else
                         rng.choice((Priority.NORMAL, Priority.LOW))).value,
            "notificationInfo": {"title": f"{category} update", "content": f"Message {index}"},
            "metadata": {"deviceInfo": "iOS", "sendTime": "2024-02-05T12:00:00Z"},
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
