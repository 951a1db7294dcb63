"""An audience send to a topic, measured: wall time, SendGrid requests and one outcome per user.

    python -m herald.bench.audience --users 100000              # the issue's 100,000-user topic
    python -m herald.bench.audience --users 5000 --page-size 1000

Starts a private local stack (its pipeline reads audience pages of `--page-size`), seeds
`--users` users subscribed to one topic (batched Firestore writes: an email address each, every
10th with notifications switched off, so some outcomes are `suppressed`), posts one email topic
send, waits until `herald reconcile` would call it finished (every page resolved, every delivery
ended), and prints JSON: the wall time from the POST to that point, the SendGrid requests the
sandbox ledger numbered for it (floor: one per page of 1,000), and the check that every
subscribed user got exactly one outcome (`audience_outcomes`).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import requests
from google.cloud import bigquery, firestore

from herald import users
from herald.bench.pipeline import Ledger
from herald.clients import bigquery_client, firestore_client
from herald.events import TERMINAL, Status
from herald.local.drain import wait_for_drain
from herald.settings import Settings

WRITE_BATCH = 500
"""Firestore's most writes per commit."""


def subscribe(client: firestore.Client, user_ids: Iterable[str], topic: str) -> int:
    """Add `topic` to each existing user's `topics` (what `PUT /v1/users/{userId}/topics/{topic}`
    writes), in batched writes; returns how many users."""
    count, batch = 0, client.batch()
    for user_id in user_ids:
        batch.update(users.user_ref(client, user_id), {users.TOPICS: firestore.ArrayUnion([topic])})
        count += 1
        if len(batch) >= WRITE_BATCH:
            batch.commit()
            batch = client.batch()
    if len(batch):
        batch.commit()
    return count


def seed_topic(client: firestore.Client, topic: str, count: int, prefix: str) -> list[str]:
    """`count` users `<prefix>-000000`... with an email address each, subscribed to `topic`;
    every 10th has notifications switched off. Returns their ids."""
    ids, batch = [], client.batch()
    for index in range(count):
        user_id = f"{prefix}-{index:06d}"
        batch.set(users.user_ref(client, user_id), {
            users.EMAIL: f"{user_id}@example.com", users.LOCALE: "en-US",
            users.NOTIFICATION_ENABLED: index % 10 != 3, users.TOPICS: [topic]})
        ids.append(user_id)
        if len(batch) >= WRITE_BATCH:
            batch.commit()
            batch = client.batch()
    if len(batch):
        batch.commit()
    return ids


def post_topic_send(api_url: str, api_key: str, topic: str, channel: str,
                    notification_id: str) -> str:
    """POST one audience send to `topic`; returns its trace id."""
    response = requests.post(f"{api_url}/v1/notifications", timeout=30, headers={
        "Authorization": f"Bearer {api_key}"}, json={
        "audience": {"topic": topic}, "notificationId": notification_id,
        "serviceType": "news", "categoryType": "account", "notificationType": channel,
        "templateType": "topic_news", "priority": "normal",
        "notificationInfo": {"title": "News", "content": "Something happened."}})
    response.raise_for_status()
    return response.json()["traceId"]


@dataclass(frozen=True)
class AudienceOutcomes:
    """What BigQuery holds about one audience send."""

    outcomes: Mapping[str, collections.Counter]
    """user -> how many terminal outcomes each of its deliveries (spans) had, by span."""
    statuses: collections.Counter
    """Terminal status -> deliveries."""
    pages: list[dict[str, Any]]
    """The `audience` events, by page: page, page_users, audience_size."""
    complete: dict[str, Any] | None
    """The `audience_complete` event: page (pages), audience_size."""
    resolved: int
    """Deliveries the pages' `resolved` events count."""

    def check(self, subscribers: set[str]) -> list[str]:
        """What is wrong, if anything: a subscriber without an outcome or with a delivery that
        has more than one, an outcome for a user who is not subscribed, progress events that do
        not add up."""
        problems = []
        missing = subscribers - set(self.outcomes)
        extra = set(self.outcomes) - subscribers
        repeated = {user for user, spans in self.outcomes.items() if any(n != 1 for n in spans.values())}
        if missing:
            problems.append(f"{len(missing)} subscribers without an outcome, e.g. {sorted(missing)[:3]}")
        if extra:
            problems.append(f"{len(extra)} outcomes for users not subscribed, e.g. {sorted(extra)[:3]}")
        if repeated:
            problems.append(f"{len(repeated)} users with a delivery ended twice, e.g. {sorted(repeated)[:3]}")
        numbers = [page["page"] for page in self.pages]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"audience pages are not 1..n once each: {numbers}")
        running = 0
        for page in self.pages:
            running += page["page_users"]
            if page["audience_size"] != running:
                problems.append(f"page {page['page']}: audience_size {page['audience_size']} "
                                f"is not the running total {running}")
        if self.complete is None or (self.complete["page"], self.complete["audience_size"]) != (
                len(self.pages), len(subscribers)):
            problems.append(f"audience_complete {self.complete} does not close {len(self.pages)} "
                            f"pages of {len(subscribers)} users")
        if self.resolved != sum(self.statuses.values()):
            problems.append(f"resolved counts {self.resolved} deliveries, "
                            f"{sum(self.statuses.values())} ended")
        return problems


def audience_outcomes(client: bigquery.Client, settings: Settings, trace_id: str) -> AudienceOutcomes:
    """Read one audience send's events (see AudienceOutcomes); repeated rows of one event (the
    same event id) count once."""
    terminal = [status.value for status in TERMINAL]
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("trace", "STRING", trace_id),
        bigquery.ArrayQueryParameter("terminal", "STRING", terminal)])
    rows = {row["event_id"]: dict(row) for row in client.query(
        f"SELECT event_id, status, user_id, span_id, parent_span_id, page, page_users, "
        f"audience_size, deliveries FROM `{settings.events_table}` WHERE trace_id = @trace",
        job_config=config).result()}.values()
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    statuses: collections.Counter = collections.Counter()
    for row in rows:
        if row["status"] in terminal and row["parent_span_id"] is not None:
            outcomes[row["user_id"]][row["span_id"]] += 1
            statuses[row["status"]] += 1
    pages = sorted(({key: row[key] for key in ("page", "page_users", "audience_size")}
                    for row in rows if row["status"] == Status.AUDIENCE.value),
                   key=lambda page: page["page"])
    complete = next(({key: row[key] for key in ("page", "audience_size")} for row in rows
                     if row["status"] == Status.AUDIENCE_COMPLETE.value), None)
    resolved = sum(row["deliveries"] or 0 for row in rows if row["status"] == Status.RESOLVED.value)
    return AudienceOutcomes(dict(outcomes), statuses, pages, complete, resolved)


def sendgrid_requests(sandbox_url: str, notification_id: str) -> tuple[int, int]:
    """(distinct SendGrid requests, recipients) the sandbox ledger holds for `notification_id`."""
    entries = Ledger(sandbox_url).entries(lambda nid: nid == notification_id)
    return (len({entry["request_index"] for entry in entries}),
            len({entry["recipient"] for entry in entries}))


def run(env: Mapping[str, str], users_count: int, timeout_s: float) -> dict[str, Any]:
    """Seed, send, wait, check, on the stack `env` describes (see the module docstring)."""
    settings = Settings.from_env(env)
    topic, prefix = f"bench-{uuid.uuid4().hex[:8]}", f"aud-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    subscribers = set(seed_topic(firestore_client(settings), topic, users_count, prefix))
    out: dict[str, Any] = {"users": users_count, "page_size": settings.audience_page_size,
                           "seed_s": round(time.monotonic() - started, 1)}
    notification_id = f"topic-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    trace = post_topic_send(env["HERALD_API_URL"], env["HERALD_API_KEY"], topic, "email",
                            notification_id)
    out["post_ms"] = round((time.monotonic() - started) * 1000, 1)
    client = bigquery_client(settings)
    wait_for_drain(client, settings, [trace], timeout_s=timeout_s, quiet_s=2.0, poll_s=2.0)
    out["wall_s"] = round(time.monotonic() - started, 1)
    outcomes = audience_outcomes(client, settings, trace)
    out["sendgrid_requests"], out["recipients_in_ledger"] = sendgrid_requests(
        env["HERALD_SANDBOX_URL"], notification_id)
    out["sendgrid_floor"] = math.ceil(outcomes.statuses.get(Status.SENT.value, 0) / 1000)
    out["pages"] = len(outcomes.pages)
    out["outcomes"] = dict(outcomes.statuses)
    out["problems"] = outcomes.check(subscribers)
    out["exactly_one_outcome_per_user"] = not out["problems"]
    return out


def main(argv: list[str] | None = None) -> int:
    from herald.local import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="herald-audience-") as state, stack.running(
            Path(state), seed_users=0, HERALD_AUDIENCE_PAGE_SIZE=str(args.page_size)) as env:
        result = run(env, args.users, args.timeout_s)
    print(json.dumps(result, indent=2))
    return 0 if result["exactly_one_outcome_per_user"] else 1


if __name__ == "__main__":
    sys.exit(main())
