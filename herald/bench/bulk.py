"""Bulk email: how many SendGrid HTTP requests a bulk send costs per 1,000 recipients.

A bulk send is one request per page of up to MAX_AUDIENCE users (`userIds`), as the contract
defines it, to N seeded users who take email in that category; the sandbox ledger numbers every
provider HTTP request (`request_index`), so the distinct indexes among the bulk's ledger entries
are the SendGrid requests it took. SendGrid allows 1,000 personalizations per request, so the
floor is ceil(N / 1000) requests.
"""

from __future__ import annotations

import collections
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from herald.bench.memory import RssSampler
from herald.bench.pipeline import fresh_pipeline, wait_for_ledger, warm_up
from herald.contracts import MAX_AUDIENCE
from herald.local.seed import demo_users
from herald.providers.sendgrid.limits import MAX_PERSONALIZATIONS
from herald.settings import Settings

CATEGORY, TEMPLATE = "account", "password_changed"


@dataclass(frozen=True)
class BulkConfig:
    recipients: int
    users: int
    timeout_s: float
    warmup_timeout_s: float = 120.0


def bulk_bodies(notification_id: str, recipients: int, users: int) -> list[dict[str, Any]]:
    """One bulk email request per page of MAX_AUDIENCE recipients, all sharing content; page k
    is `notification_id`-k, so each page is its own idempotent request."""
    takers = [user.user_id for user in demo_users(users)
              if user.document["notification_enabled"] and user.document["categories"][CATEGORY]
              and user.document["channels"]["email"] and user.document["email"]]
    if len(takers) < recipients:
        raise ValueError(f"only {len(takers)} of {users} seeded users take {CATEGORY} email; "
                         f"seed more users or ask for fewer recipients")
    audience = takers[:recipients]
    return [{"userIds": audience[start:start + MAX_AUDIENCE],
             "notificationId": f"{notification_id}-{start // MAX_AUDIENCE}",
             "serviceType": "accounts", "categoryType": CATEGORY, "notificationType": "email",
             "templateType": TEMPLATE, "priority": "normal",
             "notificationInfo": {"title": "Terms update", "content": "Our terms changed."},
             "metadata": {"sendTime": "2024-02-05T12:00:00Z"}}
            for start in range(0, len(audience), MAX_AUDIENCE)]


def post_bulk(api_url: str, api_key: str, bodies: list[dict[str, Any]]) -> collections.Counter:
    """POST every page; returns the count of each HTTP status."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {api_key}"
        return collections.Counter(
            session.post(f"{api_url}/v1/notifications", json=body, timeout=30).status_code
            for body in bodies)


def requests_per_thousand(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Distinct provider requests among ledger entries, per 1,000 recipients (pure)."""
    recipients = len({entry["recipient"] for entry in entries})
    requests = len({entry["request_index"] for entry in entries})
    floor = math.ceil(recipients / MAX_PERSONALIZATIONS) if recipients else 0
    return {
        "recipients_delivered": recipients,
        "ledger_entries": len(entries),
        "sendgrid_requests": requests,
        "requests_per_1000_recipients": round(requests * 1000 / recipients, 3) if recipients else None,
        "floor_per_1000_recipients": round(floor * 1000 / recipients, 3) if recipients else None,
    }


def run(env: Mapping[str, str], settings: Settings, log_dir: Path, config: BulkConfig,
        sampler: RssSampler, cleanup: list[Callable[[], None]],
        say: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"recipients": config.recipients}
    with fresh_pipeline("bulk", env, settings, log_dir, sampler, cleanup, say) as pipeline:
        warm = warm_up(pipeline, env, config.users, config.warmup_timeout_s)
        out["warmup_s"] = None if warm is None else round(warm, 1)
        if warm is None:
            out["error"] = "the fresh pipeline did not deliver its warm-up requests"
            return out
        notification_id = f"bulk-{uuid.uuid4().hex[:12]}"
        bodies = bulk_bodies(notification_id, config.recipients, config.users)
        say(f"  {len(bodies)} bulk email request(s) to {config.recipients} users ...")
        started = time.monotonic()
        statuses = post_bulk(env["HERALD_API_URL"], env["HERALD_API_KEY"], bodies)
        accepted = sum(len(body["userIds"]) for body in bodies) if statuses == {202: len(bodies)} else 0
        out["accepted"] = accepted
        out["statuses"] = {str(status): count for status, count in sorted(statuses.items())}
        out["send_s"] = round(time.monotonic() - started, 2)
        entries, _ = wait_for_ledger(pipeline.ledger, lambda nid: nid.startswith(notification_id), accepted,
                                     timeout_s=config.timeout_s, poll_s=2.0, alive=pipeline.alive)
        out["delivered_within_s"] = round(time.monotonic() - started, 1)
        out.update(requests_per_thousand(entries))
        if out["recipients_delivered"] < accepted:
            out["incomplete"] = (f"{out['recipients_delivered']} of {accepted} recipients in the "
                                 f"ledger after {config.timeout_s:g}s")
        say(f"  {out['sendgrid_requests']} SendGrid requests for {out['recipients_delivered']} "
            f"recipients = {out['requests_per_1000_recipients']} per 1,000")
        return out
