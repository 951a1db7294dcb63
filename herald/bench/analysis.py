"""Pure analysis of the pipeline figures: who receives what, per-delivery latency with censoring,
the sent/accepted/delivered timeline and its backlog slope, and first-to-last drain rates.

Kept free of Beam and Google clients so its tests are fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from herald.bench.load import OpenRecord
from herald.bench.stats import INF, cumulative_counts, slope, summarize
from herald.contracts import Channel
from herald.local.seed import SeedUser, demo_users
from herald.workload import make_requests

SUSTAINED_ACCEPT_SHARE = 0.95
"""Sustained: the API accepted at least this share of the offered rate ..."""
SUSTAINED_BACKLOG_SLOPE = 0.02
"""... and the backlog (accepted - delivered) grew by at most this share of the offered rate per
second over the second half of the load window."""


# --- who can receive what ------------------------------------------------------------------------

def receives_everything(user: SeedUser) -> bool:
    """A seeded user with no opt-out, a phone, and only enabled, registered devices."""
    doc = user.document
    return (doc["notification_enabled"] and all(doc["categories"].values())
            and all(doc["channels"].values()) and bool(doc["phone"]) and bool(doc["email"])
            and all(device["notification_enabled"] and not device["token"].startswith("unregistered-")
                    for device in user.devices.values()))


def expected_deliveries(user: SeedUser, channel: str) -> int:
    return len(user.devices) if channel == Channel.PUSH.value else 1


def phase_bodies(phase: str, count: int, users: int, seed: int = 23
                 ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`count` demo-mix bodies for users who receive everything, notificationIds `b-<phase>-<i>`;
    and the ledger entries each notificationId must produce."""
    clean = [user for user in demo_users(users) if receives_everything(user)]
    if not clean:
        raise ValueError(f"none of {users} seeded users receives everything")
    bodies, expected = [], {}
    for index, body in enumerate(make_requests(count, users, seed=seed, duplicate_rate=0.0,
                                               unknown_user_rate=0.0)):
        user = clean[(index * 7919) % len(clean)]
        body = {**body, "userId": user.user_id, "notificationId": f"b-{phase}-{index:06d}",
                "metadata": {}}  # every device: a push's fan-out is the user's devices
        bodies.append(body)
        expected[body["notificationId"]] = expected_deliveries(user, body["notificationType"])
    return bodies, expected


# --- analysis (pure) -----------------------------------------------------------------------------

def ledger_epoch(entry: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Observation:
    """Inputs to `analyse`: the open-loop records (index i carries notification_ids[i]), the
    ledger entries seen, and until when the ledger was watched."""

    records: Sequence[OpenRecord]
    notification_ids: Sequence[str]
    expected: Mapping[str, int]
    ledger: Sequence[Mapping[str, Any]]
    start: float
    duration_s: float
    observed_until: float
    rate: float


def analyse(obs: Observation) -> dict[str, Any]:
    accepted_at: dict[str, float] = {}
    for record in obs.records:
        if record.accepted and record.answered is not None:
            accepted_at[obs.notification_ids[record.index]] = record.answered
    seen: dict[str, list[float]] = {}
    for entry in obs.ledger:
        nid = entry.get("notification_id")
        if nid in accepted_at:
            seen.setdefault(nid, []).append(ledger_epoch(entry))
    delivery_latencies: list[float] = []
    request_latencies: list[float] = []
    completed_at: list[float] = []
    for nid, accepted in accepted_at.items():
        times = sorted(seen.get(nid, []))
        delivery_latencies += [t - accepted for t in times]
        missing = obs.expected[nid] - len(times)
        delivery_latencies += [INF] * max(missing, 0)
        if missing <= 0 and times:
            completed_at.append(times[-1])
            request_latencies.append(times[-1] - accepted)
        else:
            request_latencies.append(INF)
    end = obs.start + obs.duration_s
    edges = [obs.start + second for second in range(int(obs.observed_until - obs.start) + 1)]
    offered = cumulative_counts((r.scheduled for r in obs.records), edges)
    sent = cumulative_counts((r.sent for r in obs.records if r.sent is not None), edges)
    accepted = cumulative_counts(accepted_at.values(), edges)
    delivered = cumulative_counts(completed_at, edges)
    timeline = [{"t_s": round(edge - obs.start, 1), "offered": o, "sent": s, "accepted": a,
                 "delivered": d, "backlog": a - d}
                for edge, o, s, a, d in zip(edges, offered, sent, accepted, delivered)]
    second_half = [(row["t_s"], row["backlog"]) for row in timeline
                   if obs.duration_s / 2 <= row["t_s"] <= obs.duration_s]
    growth = slope(second_half)
    accepted_in_window = sum(1 for t in accepted_at.values() if t < end)
    accept_rate = accepted_in_window / obs.duration_s if obs.duration_s else 0.0
    delivered_rate = sum(1 for t in completed_at if obs.start <= t < end) / obs.duration_s \
        if obs.duration_s else 0.0
    ingest = summarize(r.answered - r.scheduled for r in obs.records
                       if r.accepted and r.answered is not None)
    delivery, request = summarize(delivery_latencies), summarize(request_latencies)
    errors: dict[str, int] = {}
    for record in obs.records:
        if not record.accepted:
            key = record.error or f"HTTP {record.status}"
            errors[key] = errors.get(key, 0) + 1
    return {
        "offered_rate": obs.rate,
        "duration_s": obs.duration_s,
        "observed_s": round(obs.observed_until - obs.start, 1),
        "requests_offered": len(obs.records),
        "requests_accepted": len(accepted_at),
        "request_errors": errors,
        "accepted_rate": round(accept_rate, 1),
        "delivered_rate": round(delivered_rate, 1),
        "deliveries_expected": sum(obs.expected[nid] for nid in accepted_at),
        "deliveries_seen": sum(len(v) for v in seen.values()),
        "requests_completed": len(completed_at),
        "latency_delivery": delivery.to_json(),
        "latency_request_complete": request.to_json(),
        "latency_ingest_202": ingest.to_json(),
        "backlog_end_of_load": next((row["backlog"] for row in reversed(timeline)
                                     if row["t_s"] <= obs.duration_s), 0),
        "backlog_end_of_observation": timeline[-1]["backlog"] if timeline else 0,
        "backlog_growth_per_s": round(growth, 2),
        "sustained": (accept_rate >= SUSTAINED_ACCEPT_SHARE * obs.rate
                      and growth <= SUSTAINED_BACKLOG_SLOPE * obs.rate),
        "timeline": timeline,
    }


def drain_rate(completions: Sequence[float]) -> dict[str, Any]:
    """Rate from the first completion to the last (pure): the same definition as the bare read's
    first-to-last message rate, so start-up is outside both."""
    ordered = sorted(completions)
    span = ordered[-1] - ordered[0] if len(ordered) > 1 else 0.0
    return {"completed": len(ordered), "reading_s": round(span, 3),
            "rate_per_s": round((len(ordered) - 1) / span, 1) if span > 0 else None}


def delivery_outcomes(entries: Sequence[Mapping[str, Any]], expected: Mapping[str, int]
                      ) -> dict[str, Any]:
    """Duplicates (a recipient of a request reached more than once) and losses (deliveries of a
    request that never reached a recipient), from the ledger; pure."""
    counts: dict[tuple[str, str], int] = {}
    for entry in entries:
        key = (entry["notification_id"], entry["recipient"])
        counts[key] = counts.get(key, 0) + 1
    reached: dict[str, int] = {}
    for nid, _ in counts:
        reached[nid] = reached.get(nid, 0) + 1
    total = sum(expected.values())
    duplicates = sum(count - 1 for count in counts.values())
    lost = sum(max(0, want - reached.get(nid, 0)) for nid, want in expected.items())
    return {"deliveries_expected": total, "deliveries_reached": total - lost,
            "duplicates": duplicates, "lost": lost,
            "lost_notification_ids": sorted(nid for nid, want in expected.items()
                                            if reached.get(nid, 0) < want),
            "duplicate_rate": round(duplicates / total, 4) if total else None,
            "loss_rate": round(lost / total, 4) if total else None}
