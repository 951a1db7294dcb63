"""Pipeline: end-to-end latency (HTTP 202 -> sandbox ledger) and delivered rate under open-loop load,
and the rate of a bare Beam read of the same kind of subscription.

Each offered load gets a fresh subscription on the requests topic and a fresh pipeline process (the
same module and flags `herald local up` uses, plus `--requests_subscription`), so the backlog one
phase leaves behind cannot leak into the next. The workload is the demo mix (channels, priorities,
categories) addressed only to seeded users who receive everything, with unique notificationIds and
no duplicates, so every accepted request has a known number of ledger entries: a delivery that
never shows up counts as "later than we watched" (inf) in the percentiles instead of vanishing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import requests
from google.api_core import exceptions
from google.cloud import pubsub_v1

from herald.bench.analysis import Observation, analyse, drain_rate, ledger_epoch, phase_bodies
from herald.bench.load import OpenLoopResult, open_loop
from herald.bench.memory import CpuWindow, RssSampler
from herald.bench.profile import EXECUTOR_THREAD, Profiler
from herald.contracts import new_envelope, parse_request
from herald.local import processes, stack
from herald.local.provision import ACK_DEADLINE_S
from herald.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
BARE_SCRIPT = REPO_ROOT / "bench" / "bare_read_pipeline.py"
WARMUP_REQUESTS = 5


# --- the stack side ------------------------------------------------------------------------------

def create_subscription(settings: Settings, name: str) -> str:
    """A subscription on `settings.requests_topic` (the urgent lane's: `settings.urgent_lane()`)."""
    subscriber = pubsub_v1.SubscriberClient()
    try:
        path = settings.subscription_path(name)
        try:
            subscriber.create_subscription(name=path, topic=settings.topic_path(
                settings.requests_topic), ack_deadline_seconds=ACK_DEADLINE_S)
        except exceptions.AlreadyExists:
            pass
        return path
    finally:
        subscriber.close()


def delete_subscription(settings: Settings, name: str) -> None:
    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.delete_subscription(subscription=settings.subscription_path(name))
    except exceptions.NotFound:
        pass
    finally:
        subscriber.close()


def start_pipeline(name: str, subscription: str, env: Mapping[str, str], log_dir: Path,
                   extra_args: Sequence[str] = (),
                   niceness: int = stack.BACKGROUND_NICENESS) -> subprocess.Popen:
    """The pipeline exactly as `herald local up` starts it, on the given subscription (the
    urgent lane's with `niceness` 0, as the stack does)."""
    return processes.start(dataclasses.replace(stack.pipeline_service(
        name, "pipelines.herald_pipeline", env, log_dir,
        ("--requests_subscription", subscription, *extra_args), timeout_s=120.0),
        niceness=niceness), log_dir)


class Ledger:
    """Reads the sandbox's `GET /_ledger`, keeping only the entries whose notificationId we want."""

    def __init__(self, sandbox_url: str) -> None:
        self._url = f"{sandbox_url}/_ledger"
        self._session = requests.Session()

    def entries(self, wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
        response = self._session.get(self._url, timeout=60)
        response.raise_for_status()
        return [entry for entry in response.json()["entries"]
                if entry.get("notification_id") and wanted(entry["notification_id"])]


class PipelineDied(RuntimeError):
    """The pipeline process under test exited; the message carries its log's tail."""


def wait_for_ledger(ledger: Ledger, wanted: Callable[[str], bool], expected: int, *,
                    timeout_s: float, poll_s: float = 1.0,
                    alive: Callable[[], None] | None = None) -> tuple[list[dict[str, Any]], float]:
    """Poll until `expected` matching entries are in the ledger or `timeout_s` passes; returns the
    entries and the wall time of the last poll (everything up to it has been observed).
    `alive` raises (PipelineDied) if the process that should fill the ledger is gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        polled_at = time.time()
        entries = ledger.entries(wanted)
        if len(entries) >= expected or time.monotonic() >= deadline:
            return entries, polled_at
        if alive:
            alive()
        time.sleep(poll_s)


def post_json(api_url: str, api_key: str, bodies: Iterable[dict[str, Any]]) -> int:
    """POST bodies one by one (small warm-ups); returns how many got a 202."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    return sum(session.post(f"{api_url}/v1/notifications", json=body, timeout=30).status_code == 202
               for body in bodies)


@dataclass(frozen=True)
class PipelineConfig:
    rates: tuple[float, ...]
    duration_s: float
    grace_s: float
    users: int
    warmup_timeout_s: float = 120.0
    drain_s: float = 20.0
    max_connections: int = 128
    backlog_requests: int = 2000
    backlog_watch_s: float = 60.0


@dataclass
class FreshPipeline:
    """A pipeline process of its own on a subscription of its own, with the ledger to watch."""

    phase: str
    process: subprocess.Popen
    log_path: Path
    ledger: Ledger

    def alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
            raise PipelineDied(f"pipeline-{self.phase} exited with code {code}; log tail:\n{tail}")


@contextlib.contextmanager
def fresh_pipeline(phase: str, env: Mapping[str, str], settings: Settings, log_dir: Path,
                   sampler: RssSampler, cleanup: list[Callable[[], None]],
                   say: Callable[[str], None]) -> Iterator[FreshPipeline]:
    subscription = f"bench-pipeline-{phase}"
    path = create_subscription(settings, subscription)
    urgent_path = create_subscription(settings.urgent_lane(), f"{subscription}-urgent")
    try:
        say(f"pipeline-{phase}: starting a fresh pipeline on {subscription} (and one for the "
            f"urgent lane's high-priority requests) ...")
        urgent = start_pipeline(f"pipeline-{phase}-urgent", urgent_path, env, log_dir,
                                ("--lane", "urgent"), niceness=0)
        cleanup.append(lambda: processes.stop_group(urgent.pid))
        process = start_pipeline(f"pipeline-{phase}", path, env, log_dir)
        cleanup.append(lambda: processes.stop_group(process.pid))
        sampler.track(f"pipeline_{phase}", process.pid)
        try:
            yield FreshPipeline(phase, process, log_dir / f"pipeline-{phase}.log",
                                Ledger(env["HERALD_SANDBOX_URL"]))
        finally:
            sampler.untrack(f"pipeline_{phase}")
            processes.stop_group(process.pid)
            processes.stop_group(urgent.pid)
    finally:
        delete_subscription(settings, subscription)
        delete_subscription(settings, f"{subscription}-urgent")


def warm_up(pipeline: FreshPipeline, env: Mapping[str, str], users: int,
            timeout_s: float) -> float | None:
    """A few requests through the fresh pipeline; seconds until all reached the ledger, or None.
    The load starts only once the pipeline delivers, so its start-up is not in the latency."""
    bodies, expected = phase_bodies(f"{pipeline.phase}-warm", WARMUP_REQUESTS, users, seed=5)
    started = time.monotonic()
    post_json(env["HERALD_API_URL"], env["HERALD_API_KEY"], bodies)
    prefix = f"b-{pipeline.phase}-warm-"
    entries, _ = wait_for_ledger(pipeline.ledger, lambda nid: nid.startswith(prefix),
                                 sum(expected.values()), timeout_s=timeout_s,
                                 alive=pipeline.alive)
    return time.monotonic() - started if len(entries) >= sum(expected.values()) else None


def _warm_or_error(pipeline: FreshPipeline, env: Mapping[str, str], users: int, timeout_s: float,
                   out: dict[str, Any], say: Callable[[str], None]) -> bool:
    warm = warm_up(pipeline, env, users, timeout_s)
    out["warmup_s"] = None if warm is None else round(warm, 1)
    if warm is None:
        out["error"] = (f"the fresh pipeline delivered not all of {WARMUP_REQUESTS} warm-up "
                        f"requests within {timeout_s:g}s")
        say(f"  {out['error']}")
        return False
    return True


def run_rate(rate: float, env: Mapping[str, str], settings: Settings, log_dir: Path,
             config: PipelineConfig, sampler: RssSampler, cleanup: list[Callable[[], None]],
             say: Callable[[str], None]) -> dict[str, Any]:
    """One offered load: fresh pipeline, warm-up, paced load, then watch the ledger a while."""
    phase = f"r{int(rate)}"
    out: dict[str, Any] = {"offered_rate": rate}
    with fresh_pipeline(phase, env, settings, log_dir, sampler, cleanup, say) as pipeline:
        if not _warm_or_error(pipeline, env, config.users, config.warmup_timeout_s, out, say):
            return out
        count = int(round(rate * config.duration_s))
        bodies, expected = phase_bodies(phase, count, config.users)
        notification_ids = [body["notificationId"] for body in bodies]
        payloads = [json.dumps(body).encode() for body in bodies]
        say(f"  warm in {out['warmup_s']}s; {count} requests at {rate:g}/s for "
            f"{config.duration_s:g}s (open loop) ...")
        prefix = f"b-{phase}-"
        wanted = lambda nid: nid.startswith(prefix) and "-warm-" not in nid  # noqa: E731
        with CpuWindow({"pipeline": pipeline.process.pid}) as cpu:
            result: OpenLoopResult = open_loop(
                env["HERALD_API_URL"], "/v1/notifications", payloads, rate=rate,
                duration_s=config.duration_s, max_connections=config.max_connections,
                drain_s=config.drain_s, headers={"Authorization": f"Bearer {env['HERALD_API_KEY']}"})
        accepted_ids = {notification_ids[r.index] for r in result.records if r.accepted}
        entries, observed_until = wait_for_ledger(
            pipeline.ledger, wanted, sum(expected[nid] for nid in accepted_ids),
            timeout_s=config.grace_s, poll_s=2.0, alive=pipeline.alive)
        out.update(analyse(Observation(result.records, notification_ids, expected, entries,
                                       result.start_wall, config.duration_s, observed_until, rate)))
        out["generator_cpu_cores"] = round(result.generator_cpu_s / result.wall_s, 3)
        out["late_dispatches"] = result.late_dispatches
        out["connections_opened"] = result.connections_opened
        out["pipeline_cpu_cores"] = round(cpu.cores["pipeline"], 3)
        out["machine_busy_cores"] = round(cpu.machine_cores, 2)
        out["other_work_cores"] = round(cpu.other_cores, 2)
        delivery = out["latency_delivery"]
        say(f"  accepted {out['accepted_rate']}/s, delivered {out['delivered_rate']}/s, "
            f"delivery p50/p99 {delivery['p50_s']}/{delivery['p99_s']} s, backlog "
            f"{out['backlog_end_of_load']} at end of load ({out['backlog_growth_per_s']:+}/s)")
        return out


BACKLOG_PROFILE_VIEWS = {
    "DirectRunner executor thread: wall time, waits included": EXECUTOR_THREAD,
    "All threads: wall time, idle threads included": None,
}
"""The executor thread first: the streaming DirectRunner runs every bundle on that one thread, so
its wall time (waits included) is what bounds the backlog rate."""


def run_backlog(env: Mapping[str, str], settings: Settings, log_dir: Path, config: PipelineConfig,
                sampler: RssSampler, cleanup: list[Callable[[], None]], profiler: Profiler,
                say: Callable[[str], None]) -> dict[str, Any]:
    """The pipeline's own capacity on a pre-filled backlog, the same way the bare read is measured:
    warm fresh pipeline, then `backlog_requests` messages published at once straight onto the
    topic; requests completed per second from the first to the last, within `backlog_watch_s`."""
    out: dict[str, Any] = {"requests": config.backlog_requests}
    with fresh_pipeline("backlog", env, settings, log_dir, sampler, cleanup, say) as pipeline:
        if not _warm_or_error(pipeline, env, config.users, config.warmup_timeout_s, out, say):
            return out
        say(f"  warm in {out['warmup_s']}s; publishing {config.backlog_requests} requests at once, "
            f"watching for up to {config.backlog_watch_s:g}s ...")
        with CpuWindow({"pipeline": pipeline.process.pid}) as cpu:
            expected = publish_backlog(settings, "drain", config.backlog_requests, config.users)
            with profiler.record("backlog", "the fresh pipeline process, draining the backlog",
                                 pipeline.process.pid, config.backlog_watch_s, threads=True,
                                 idle=True, views=BACKLOG_PROFILE_VIEWS):
                entries, _ = wait_for_ledger(
                    pipeline.ledger, lambda nid: nid.startswith("b-drain-"),
                    sum(expected.values()), timeout_s=config.backlog_watch_s, poll_s=2.0,
                    alive=pipeline.alive)
        seen: dict[str, list[float]] = {}
        for entry in entries:
            seen.setdefault(entry["notification_id"], []).append(ledger_epoch(entry))
        completions = [max(times) for nid, times in seen.items() if len(times) >= expected[nid]]
        out.update(drain_rate(completions))
        out["deliveries_seen"] = len(entries)
        out["pipeline_cpu_cores"] = round(cpu.cores["pipeline"], 3)
        out["machine_busy_cores"] = round(cpu.machine_cores, 2)
        out["other_work_cores"] = round(cpu.other_cores, 2)
        say(f"  {out['completed']} of {config.backlog_requests} requests completed, "
            f"{out['rate_per_s']}/s")
        return out


# --- the bare read -------------------------------------------------------------------------------

def publish_backlog(settings: Settings, phase: str, count: int, users: int,
                    priority: str | None = None) -> dict[str, int]:
    """`count` messages exactly as the ingest function publishes them (envelope JSON plus the
    channel/priority attributes), straight onto the requests topic, all of `priority` if given;
    returns the ledger entries each notificationId should produce."""
    bodies, expected = phase_bodies(phase, count, users, seed=31)
    if priority is not None:
        bodies = [{**body, "priority": priority} for body in bodies]
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.05))
    topic = settings.topic_path(settings.requests_topic)
    futures = []
    for body in bodies:
        data, attributes = new_envelope(parse_request(body), "bench").to_pubsub()
        futures.append(publisher.publish(topic, data, **attributes))
    for future in futures:
        future.result(timeout=60)
    return expected


def run_bare(env: Mapping[str, str], settings: Settings, log_dir: Path, messages: int,
             users: int, timeout_s: float, sampler: RssSampler,
             cleanup: list[Callable[[], None]], say: Callable[[str], None]) -> dict[str, Any]:
    """Pre-fill a fresh subscription with `messages`, then let bench/bare_read_pipeline.py read
    them (ReadFromPubSub on the streaming DirectRunner -> count) and report its rate."""
    subscription = "bench-bare-read"
    path = create_subscription(settings, subscription)
    try:
        say(f"bare read: pre-filling {messages} messages on {subscription} ...")
        publish_backlog(settings, "bare", messages, users)
        say("bare read: ReadFromPubSub -> count on the streaming DirectRunner ...")
        log_path = log_dir / "bare-read.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, str(BARE_SCRIPT), "--subscription", path, "--expect",
                 str(messages), "--timeout_s", str(timeout_s)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                start_new_session=True)
        cleanup.append(lambda: processes.stop_group(process.pid))
        sampler.track("bare_read", process.pid)
        try:
            stdout, _ = process.communicate(timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:
            processes.stop_group(process.pid)
            stdout, _ = process.communicate()
        finally:
            sampler.untrack("bare_read")
        processes.stop_group(process.pid)
        lines = [line for line in stdout.decode(errors="replace").splitlines()
                 if line.startswith("{")]
        if not lines:
            return {"messages": messages, "error": f"no rate printed (see {log_path})"}
        final = json.loads(lines[-1])
        say(f"  {final.get('count')} messages at {final.get('rate_per_s')}/s")
        return {"messages": messages, **final}
    finally:
        delete_subscription(settings, subscription)
