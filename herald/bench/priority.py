"""The priority part of `herald bench` (issue 12): urgent work behind a routine backlog, and how
late scheduled sends are.

1. A warm fresh pipeline pair (routine and urgent lanes, `pipeline.fresh_pipeline`); then
   ROUTINE_BACKLOG low-priority requests published at once onto the routine topic, and while
   they wait URGENT_REQUESTS high-priority SMS posted through the HTTP API one by one. Latency of
   each: the sandbox ledger's time minus the moment its 202 came back; p99 bar < 1 s.
2. Once the backlog drained (or DRAIN_TIMEOUT_S passed), SCHEDULED requests posted with a
   sendTime SCHEDULE_AHEAD_S ahead; lateness: ledger time minus sendTime (negative would be
   early); bar: p50 and p99 within 0..10 s.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from herald.bench.analysis import ledger_epoch, phase_bodies
from herald.bench.memory import RssSampler
from herald.bench.pipeline import (PipelineConfig, _warm_or_error, fresh_pipeline, post_json,
                                   publish_backlog, wait_for_ledger)
from herald.bench.stats import INF, summarize
from herald.settings import Settings

ROUTINE_BACKLOG = 3000
URGENT_REQUESTS = 30
URGENT_SPACING_S = 0.2
SCHEDULED = 30
SCHEDULE_AHEAD_S = 8.0
DRAIN_TIMEOUT_S = 180.0
"""Scheduled sends are measured once the routine backlog drained (a due release joins the
routine topic's queue like any routine request); if it has not by then, they are measured behind
what is left, and `routine_drained_before_scheduled` says so."""


def _post_urgent(env: Mapping[str, str], bodies: list[dict[str, Any]]) -> dict[str, float]:
    """POST each body; notificationId -> wall time its 202 came back."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env['HERALD_API_KEY']}"
    accepted = {}
    for body in bodies:
        response = session.post(f"{env['HERALD_API_URL']}/v1/notifications", json=body, timeout=30)
        if response.status_code == 202:
            accepted[body["notificationId"]] = time.time()
        time.sleep(URGENT_SPACING_S)
    return accepted


def _latencies(entries: list[dict[str, Any]], start: Mapping[str, float]) -> list[float]:
    """Per notificationId, first ledger time minus its start; INF for one never seen."""
    first: dict[str, float] = {}
    for entry in entries:
        nid = entry["notification_id"]
        first[nid] = min(first.get(nid, INF), ledger_epoch(entry))
    return [first.get(nid, INF) - at for nid, at in start.items()]


def run(env: Mapping[str, str], settings: Settings, log_dir: Path, config: PipelineConfig,
        sampler: RssSampler, cleanup: list[Callable[[], None]],
        say: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"routine_backlog": ROUTINE_BACKLOG}
    with fresh_pipeline("priority", env, settings, log_dir, sampler, cleanup, say) as pipeline:
        if not _warm_or_error(pipeline, env, config.users, config.warmup_timeout_s, out, say):
            return out
        say(f"  publishing {ROUTINE_BACKLOG} low-priority requests at once, then "
            f"{URGENT_REQUESTS} high-priority SMS through the API ...")
        expected = publish_backlog(settings, "routine", ROUTINE_BACKLOG, config.users,
                                   priority="low")
        urgent, _ = phase_bodies("urgent", URGENT_REQUESTS, config.users, seed=41)
        accepted = _post_urgent(env, [{**body, "notificationType": "sms", "priority": "high"}
                                      for body in urgent])
        entries, _ = wait_for_ledger(pipeline.ledger, lambda nid: nid.startswith("b-urgent-"),
                                     len(accepted), timeout_s=30, poll_s=0.5, alive=pipeline.alive)
        routine_done = len(pipeline.ledger.entries(lambda nid: nid.startswith("b-routine-")))
        out["urgent_latency"] = summarize(_latencies(entries, accepted)).to_json()
        out["routine_deliveries_done_when_urgent_done"] = routine_done
        out["routine_deliveries_expected"] = sum(expected.values())
        say(f"  high priority p50/p99 {out['urgent_latency']['p50_s']}/"
            f"{out['urgent_latency']['p99_s']} s with {routine_done} of "
            f"{sum(expected.values())} routine deliveries done")

        drained, _ = wait_for_ledger(
            pipeline.ledger, lambda nid: nid.startswith("b-routine-"), sum(expected.values()),
            timeout_s=max(config.backlog_watch_s, DRAIN_TIMEOUT_S), poll_s=2.0,
            alive=pipeline.alive)
        out["routine_drained_before_scheduled"] = len(drained) >= sum(expected.values())
        send_at = datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_AHEAD_S)
        scheduled, _ = phase_bodies("sched", SCHEDULED, config.users, seed=43)
        out["scheduled_accepted"] = post_json(env["HERALD_API_URL"], env["HERALD_API_KEY"], [
            {**body, "notificationType": "email", "priority": "normal",
             "metadata": {"sendTime": send_at.isoformat()}} for body in scheduled])
        entries, _ = wait_for_ledger(pipeline.ledger, lambda nid: nid.startswith("b-sched-"),
                                     SCHEDULED, timeout_s=SCHEDULE_AHEAD_S + 30, poll_s=0.5,
                                     alive=pipeline.alive)
        lateness = _latencies(entries, dict.fromkeys(
            (body["notificationId"] for body in scheduled), send_at.timestamp()))
        out["scheduled_lateness"] = summarize(lateness).to_json()
        out["scheduled_early"] = sum(late < 0 for late in lateness)
        say(f"  scheduled sends: lateness p50/p99 {out['scheduled_lateness']['p50_s']}/"
            f"{out['scheduled_lateness']['p99_s']} s, {out['scheduled_early']} early, "
            f"{out['scheduled_accepted']} of {SCHEDULED} accepted (202)")
        return out
