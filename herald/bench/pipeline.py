"""Pipeline: end-to-end latency (HTTP 202 -> sandbox ledger) and delivered rate under open-loop load;
the rate at which Herald's pipeline and the peer worker (bench/peer_worker.py) drain a pre-filled
backlog, and what each loses or sends twice with the sandbox's transient faults on.

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
from google.cloud import bigquery, pubsub_v1

from herald.bench.analysis import (Observation, analyse, delivery_outcomes, drain_rate,
                                   ledger_epoch, phase_bodies)
from herald.bench.load import OpenLoopResult, open_loop
from herald.bench import opcount
from herald.bench.memory import CpuWindow, RssSampler
from herald.bench.profile import EXECUTOR_THREAD, Profiler
from herald import dead_letters
from herald.clients import bigquery_client
from herald.contracts import new_envelope, parse_request
from herald.local import processes, provision, stack
from herald.local.provision import ACK_DEADLINE_S
from herald.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_WORKER = REPO_ROOT / "bench" / "peer_worker.py"
PEER_READY = "peer worker subscribed; running"
"""What bench/peer_worker.py logs once subscribed (its PEER_READY)."""
WARMUP_REQUESTS = 5
KINDS = ("herald", "peer")
TRANSIENT_FAULTS = {"rate_limited": 0.08, "server_error": 0.04, "unavailable": 0.05,
                    "timeout": 0.03}
"""20% of provider requests fail transiently (429 with Retry-After, 500, 503, no answer), as in
tests/chaos_test.py."""
FAULTS_ON = {"seed": 11, **{provider: {**TRANSIENT_FAULTS, "retry_after_s": 1, "timeout_s": 2.0}
                            for provider in ("fcm", "twilio", "sendgrid")}}
FAULTS_OFF = {provider: dict.fromkeys(TRANSIENT_FAULTS, 0.0)
              for provider in ("fcm", "twilio", "sendgrid")}


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


def empty_tables(settings: Settings) -> None:
    """The stack's BigQuery tables (events, dead letters, the FCM export) dropped and created
    again, empty. The BigQuery emulator keeps every row in memory and grew with each insert to
    19 GB, where the kernel killed it, within one full run; each part reads only what it wrote
    itself, so each starts on empty tables."""
    client = bigquery_client(settings)
    for table in (settings.events_table, settings.table(dead_letters.DEAD_LETTERS_TABLE),
                  settings.fcm_export_table_id):
        client.delete_table(table, not_found_ok=True)
    client.close()
    provision.create_tables(settings)


def start_pipeline(name: str, subscription: str, env: Mapping[str, str], log_dir: Path,
                   extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """The pipeline exactly as `herald local up` starts it, on the given subscription."""
    return processes.start(stack.pipeline_service(
        name, "pipelines.herald_pipeline", env, log_dir,
        ("--requests_subscription", subscription, *extra_args), timeout_s=120.0), log_dir)


class Ledger:
    """Reads the sandbox's ledger (`GET /_ledger/from/<n>`: only what is new since the last read),
    keeping every entry seen; `entries` filters them by notificationId."""

    def __init__(self, sandbox_url: str) -> None:
        self._url = f"{sandbox_url}/_ledger/from"
        self._session = requests.Session()
        self._seen: list[dict[str, Any]] = []

    def entries(self, wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
        response = self._session.get(f"{self._url}/{len(self._seen)}", timeout=60)
        response.raise_for_status()
        self._seen += response.json()["entries"]
        return [entry for entry in self._seen
                if entry.get("notification_id") and wanted(entry["notification_id"])]


class PipelineDied(RuntimeError):
    """The pipeline process under test exited; the message carries its log's tail."""


def wait_for_ledger(ledger: Ledger, wanted: Callable[[str], bool], expected: int, *,
                    timeout_s: float, poll_s: float = 1.0, alive: Callable[[], None] | None = None,
                    settle_s: float | None = None) -> tuple[list[dict[str, Any]], float]:
    """Poll until `expected` matching entries are in the ledger, `timeout_s` passes, or (with
    `settle_s`) no new one came for that long; returns the entries and the wall time of the last
    poll (everything up to it has been observed). `alive` raises (PipelineDied) if a process
    that should fill the ledger is gone."""
    deadline = time.monotonic() + timeout_s
    count, changed = -1, time.monotonic()
    while True:
        polled_at = time.time()
        entries = ledger.entries(wanted)
        if len(entries) != count:
            count, changed = len(entries), time.monotonic()
        if (len(entries) >= expected or time.monotonic() >= deadline
                or (settle_s is not None and time.monotonic() - changed >= settle_s)):
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
    faults_requests: int = 300
    faults_watch_s: float = 90.0
    workers: int = 1
    """Delivery processes sharing the subscription: Herald pipelines (durable claims keep them
    from sending one delivery twice, as on a scaled-out Dataflow job) or peer workers."""
    process_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Added to the environment of the processes the bench starts (the op-counting hook)."""


@dataclass
class Deliverer:
    """The delivery side under test: Herald's pipeline processes or the peer's workers, on
    subscriptions of their own, with the ledger to watch."""

    kind: str
    phase: str
    processes: list[subprocess.Popen]
    log_paths: list[Path]
    ledger: Ledger

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def alive(self) -> None:
        for process, log_path in zip(self.processes, self.log_paths):
            code = process.poll()
            if code is not None:
                tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
                raise PipelineDied(f"{log_path.stem} exited with code {code}; log tail:\n{tail}")



@contextlib.contextmanager
def _subscriptions(settings: Settings, base: str) -> Iterator[tuple[str, str]]:
    """A fresh subscription on each lane's topic (routine, urgent), deleted afterwards."""
    routine = create_subscription(settings, base)
    urgent = create_subscription(settings.urgent_lane(), f"{base}-urgent")
    try:
        yield routine, urgent
    finally:
        delete_subscription(settings, base)
        delete_subscription(settings, f"{base}-urgent")


@contextlib.contextmanager
def fresh_pipeline(phase: str, env: Mapping[str, str], settings: Settings, log_dir: Path,
                   sampler: RssSampler, cleanup: list[Callable[[], None]],
                   say: Callable[[str], None], workers: int = 1,
                   process_env: Mapping[str, str] | None = None) -> Iterator[Deliverer]:
    """`workers` fresh routine-lane pipeline processes sharing a fresh subscription, and one for
    the urgent lane's high-priority requests (as the stack runs it)."""
    env = {**env, **(process_env or {})}
    with _subscriptions(settings, f"bench-pipeline-{phase}") as (path, urgent_path):
        say(f"pipeline-{phase}: starting {workers} fresh pipeline process(es) on a fresh "
            "subscription (and one for the urgent lane's high-priority requests) ...")
        urgent = start_pipeline(f"pipeline-{phase}-urgent", urgent_path, env, log_dir,
                                ("--lane", "urgent"))
        cleanup.append(lambda: processes.stop_group(urgent.pid))
        started = []
        for name in stack.worker_names(f"pipeline-{phase}", workers):
            process = start_pipeline(name, path, env, log_dir)
            cleanup.append(lambda pid=process.pid: processes.stop_group(pid))
            sampler.track(name.replace("-", "_", 1), process.pid)
            started.append((name, process))
        try:
            yield Deliverer("herald", phase, [p for _, p in started] + [urgent],
                            [log_dir / f"{n}.log" for n, _ in started]
                            + [log_dir / f"pipeline-{phase}-urgent.log"],
                            Ledger(env["HERALD_SANDBOX_URL"]))
        finally:
            for name, process in started:
                sampler.untrack(name.replace("-", "_", 1))
                processes.stop_group(process.pid)
            processes.stop_group(urgent.pid)


@contextlib.contextmanager
def fresh_peer(phase: str, env: Mapping[str, str], settings: Settings, log_dir: Path,
               sampler: RssSampler, cleanup: list[Callable[[], None]],
               say: Callable[[str], None], workers: int = 1,
               process_env: Mapping[str, str] | None = None) -> Iterator[Deliverer]:
    """`workers` peer worker processes (bench/peer_worker.py), each pulling both lanes' fresh
    subscriptions, with the gunicorn THREADS of the functions as their callback threads."""
    env = {**env, "PYTHONPATH": str(REPO_ROOT), **(process_env or {})}
    threads = os.environ.get("THREADS", str(stack.FUNCTION_THREADS))
    with _subscriptions(settings, f"bench-peer-{phase}") as (path, urgent_path):
        say(f"peer-{phase}: starting {workers} peer worker process(es) ({threads} callback "
            "threads each) on fresh subscriptions ...")
        started = []
        for name in stack.worker_names(f"peer-{phase}", workers):
            process = processes.start(processes.Service(
                name, [sys.executable, str(PEER_WORKER), "--subscription", path,
                       "--subscription", urgent_path, "--threads", threads,
                       "--max-messages", str(2 * int(threads))],
                processes.log_contains(log_dir / f"{name}.log", PEER_READY), env=env,
                timeout_s=60.0), log_dir)
            cleanup.append(lambda pid=process.pid: processes.stop_group(pid))
            sampler.track(name.replace("-", "_", 1), process.pid)
            started.append((name, process))
        try:
            yield Deliverer("peer", phase, [p for _, p in started],
                            [log_dir / f"{n}.log" for n, _ in started],
                            Ledger(env["HERALD_SANDBOX_URL"]))
        finally:
            for name, process in started:
                sampler.untrack(name.replace("-", "_", 1))
                processes.stop_group(process.pid)


def deliverer(kind: str, phase: str, env: Mapping[str, str], settings: Settings, log_dir: Path,
              config: PipelineConfig, sampler: RssSampler, cleanup: list[Callable[[], None]],
              say: Callable[[str], None]) -> contextlib.AbstractContextManager[Deliverer]:
    """Herald's pipeline or the peer's workers, `config.workers` of them."""
    start = {"herald": fresh_pipeline, "peer": fresh_peer}[kind]
    return start(phase, env, settings, log_dir, sampler, cleanup, say, workers=config.workers,
                 process_env=config.process_env)


def warm_up(pipeline: Deliverer, env: Mapping[str, str], users: int,
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


def _warm_or_error(pipeline: Deliverer, env: Mapping[str, str], users: int, timeout_s: float,
                   out: dict[str, Any], say: Callable[[str], None]) -> bool:
    warm = warm_up(pipeline, env, users, timeout_s)
    out["warmup_s"] = None if warm is None else round(warm, 1)
    if warm is None:
        out["error"] = (f"the fresh pipeline delivered not all of {WARMUP_REQUESTS} warm-up "
                        f"requests within {timeout_s:g}s")
        say(f"  {out['error']}")
        return False
    return True


def _cpu_trees(pids: Sequence[int]) -> dict[str, int]:
    return {f"process_{index}": pid for index, pid in enumerate(pids)}


def run_rate(rate: float, env: Mapping[str, str], settings: Settings, log_dir: Path,
             config: PipelineConfig, sampler: RssSampler, cleanup: list[Callable[[], None]],
             say: Callable[[str], None]) -> dict[str, Any]:
    """One offered load: fresh pipeline(s), warm-up, paced load, then watch the ledger a while."""
    phase = f"r{int(rate)}"
    out: dict[str, Any] = {"offered_rate": rate, "workers": config.workers}
    with fresh_pipeline(phase, env, settings, log_dir, sampler, cleanup, say, config.workers,
                        config.process_env) as pipeline:
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
        with CpuWindow(_cpu_trees(pipeline.pids)) as cpu:
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
        out["pipeline_cpu_cores"] = round(sum(cpu.cores[name] for name in
                                              _cpu_trees(pipeline.pids)), 3)
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


def run_drain(kind: str, label: str, requests: int, watch_s: float, env: Mapping[str, str],
              settings: Settings, log_dir: Path, config: PipelineConfig, sampler: RssSampler,
              cleanup: list[Callable[[], None]], profiler: Profiler | None,
              say: Callable[[str], None], opcount_dir: Path | None = None) -> dict[str, Any]:
    """The delivery side's capacity on a pre-filled backlog: warm fresh Herald pipeline(s) or
    peer worker(s) (`kind`), then `requests` messages published at once straight onto the topic,
    exactly as the edge publishes them; requests completed per second from the first completion
    to the last, within `watch_s`. With `opcount_dir`, the Google Cloud operations the
    delivery processes made meanwhile (herald/bench/opcount.py) and their CPU seconds."""
    out: dict[str, Any] = {"kind": kind, "requests": requests, "workers": config.workers}
    with deliverer(kind, label, env, settings, log_dir, config, sampler, cleanup,
                   say) as side:
        if not _warm_or_error(side, env, config.users, config.warmup_timeout_s, out, say):
            return out
        say(f"  warm in {out['warmup_s']}s; publishing {requests} requests at once, "
            f"watching for up to {watch_s:g}s ...")
        prefix = f"b-{label}-drain-"
        before = opcount.totals(opcount_dir, side.pids) if opcount_dir else None
        with CpuWindow(_cpu_trees(side.pids)) as cpu:
            expected = publish_backlog(settings, f"{label}-drain", requests, config.users)
            recording = (profiler.record("backlog", "the fresh pipeline process, draining the "
                                         "backlog", side.pids[0], watch_s, threads=True, idle=True,
                                         views=BACKLOG_PROFILE_VIEWS)
                         if profiler is not None and kind == "herald" else contextlib.nullcontext())
            with recording:
                entries, _ = wait_for_ledger(
                    side.ledger, lambda nid: nid.startswith(prefix), sum(expected.values()),
                    timeout_s=watch_s, poll_s=2.0, alive=side.alive)
        if opcount_dir:
            time.sleep(1.0)  # the processes write their counts every half second
            out["operations"] = opcount.difference(opcount.totals(opcount_dir, side.pids),
                                                   before)
        seen: dict[str, list[float]] = {}
        for entry in entries:
            seen.setdefault(entry["notification_id"], []).append(ledger_epoch(entry))
        completions = [max(times) for nid, times in seen.items() if len(times) >= expected[nid]]
        out.update(drain_rate(completions))
        out["deliveries_seen"] = len(entries)
        out["deliveries_expected"] = sum(expected.values())
        trees = _cpu_trees(side.pids)
        out["cpu_seconds"] = round(sum(cpu.cores[name] for name in trees) * cpu.wall_s, 2)
        out["pipeline_cpu_cores"] = round(sum(cpu.cores[name] for name in trees), 3)
        out["machine_busy_cores"] = round(cpu.machine_cores, 2)
        out["other_work_cores"] = round(cpu.other_cores, 2)
        say(f"  {kind}: {out['completed']} of {requests} requests completed, "
            f"{out['rate_per_s']}/s")
        return out


def _sandbox_config(env: Mapping[str, str], config: Mapping[str, Any]) -> None:
    requests.post(f"{env['HERALD_SANDBOX_URL']}/_config", json=config,
                  timeout=10).raise_for_status()


def run_faults(kind: str, env: Mapping[str, str], settings: Settings, log_dir: Path,
               config: PipelineConfig, sampler: RssSampler, cleanup: list[Callable[[], None]],
               say: Callable[[str], None]) -> dict[str, Any]:
    """`config.faults_requests` pre-filled requests delivered by Herald or the peer while the
    sandbox fails 20% of provider requests transiently (FAULTS_ON); watched until every delivery
    arrived or `faults_watch_s` passed (no "nothing new for a while" cut: Herald defers a send
    its provider asked to wait, so quiet spells are expected); faults off again after."""
    out: dict[str, Any] = {"kind": kind, "requests": config.faults_requests,
                           "faults": TRANSIENT_FAULTS}
    with deliverer(kind, "faults", env, settings, log_dir, config, sampler, cleanup,
                   say) as side:
        if not _warm_or_error(side, env, config.users, config.warmup_timeout_s, out, say):
            return out
        _sandbox_config(env, FAULTS_ON)
        try:
            expected = publish_backlog(settings, f"{kind}-faults", config.faults_requests,
                                       config.users)
            say(f"  {kind}: {config.faults_requests} requests with 20% transient provider "
                f"faults, watching for up to {config.faults_watch_s:g}s ...")
            prefix = f"b-{kind}-faults-"
            entries, _ = wait_for_ledger(side.ledger, lambda nid: nid.startswith(prefix),
                                         sum(expected.values()), timeout_s=config.faults_watch_s,
                                         poll_s=2.0, alive=side.alive)
        finally:
            _sandbox_config(env, FAULTS_OFF)
        out.update(delivery_outcomes(entries, expected))
        say(f"  {kind}: {out['lost']} lost, {out['duplicates']} duplicates of "
            f"{out['deliveries_expected']} deliveries")
        if kind == "herald" and out["lost_notification_ids"]:
            try:
                out["lost_trail"] = event_trail(settings, out["lost_notification_ids"][:TRAIL_IDS])
            except Exception as error:  # noqa: BLE001 - the counts above stand without it
                out["lost_trail_error"] = f"{type(error).__name__}: {error}"
            say(f"  what Herald recorded about them: "
                f"{out.get('lost_trail', out.get('lost_trail_error'))}"[:2000])
        return out


TRAIL_IDS = 20
"""At most this many unreached requests get their events looked up and reported."""
TRAIL_TIMEOUT_S = 60.0
"""How long the trail's query may take: the local BigQuery emulator, its events table grown by
the earlier parts, kept one retrying for over ten minutes."""


def event_trail(settings: Settings, notification_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The events of `notification_ids`, in time order (status, reason, provider code, detail):
    what Herald recorded about deliveries the ledger did not see."""
    client = bigquery_client(settings)
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("ids", "STRING", list(notification_ids))])
    rows = client.query(
        f"SELECT event_ts, notification_id, span_id, status, reason, provider_code, detail "
        f"FROM `{settings.events_table}` WHERE notification_id IN UNNEST(@ids) "
        f"ORDER BY event_ts", job_config=config, timeout=TRAIL_TIMEOUT_S,
        retry=bigquery.DEFAULT_RETRY.with_deadline(TRAIL_TIMEOUT_S)).result(
            timeout=TRAIL_TIMEOUT_S)
    return [{key: str(value) if value is not None else None for key, value in row.items()}
            for row in rows]


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


