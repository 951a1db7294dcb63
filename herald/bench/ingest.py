"""Ingest: closed-loop throughput and latency of POST /v1/notifications on Herald's ingest function
(validate, idempotency, publish to the Pub/Sub emulator) and on the peer function
(bench/peer_function.py: validate and publish, nothing else), started the same way
(functions-framework without --debug: gunicorn, with the same WORKERS and THREADS).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

from herald.bench import opcount
from herald.bench.load import SEQUENCE_MARKER, ClosedLoopResult, closed_loop
from herald.bench.memory import CpuWindow, RssSampler
from herald.bench.profile import Profiler
from herald.bench.stats import summarize
from herald.local import processes
from herald.local.processes import Service, free_port, http_ready
from herald.workload import make_requests

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_SOURCE = REPO_ROOT / "bench" / "peer_function.py"
PATH = "/v1/notifications"


@dataclass(frozen=True)
class IngestConfig:
    connections: int
    warmup_s: float
    duration_s: float
    users: int
    opcount_dir: Path | None = None
    """Where the functions' op counts are written (herald/bench/opcount.py), if counted."""
    process_env: Mapping[str, str] = field(default_factory=dict)
    """Added to the peer function's environment (the op-counting hook)."""


def server_settings() -> dict[str, Any]:
    """What functions-framework's gunicorn will use: the env vars it reads (the runner always sets
    THREADS), or its default of one worker."""
    return {"WORKERS": int(os.environ.get("WORKERS", 1)), "THREADS": int(os.environ["THREADS"])}


def describe_server(pid: int) -> dict[str, Any]:
    """How the function process really runs: gunicorn's arbiter forks its workers as children,
    the --debug (Flask) server does not fork, so the tree says which one we measured."""
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return {"server": "gone", "processes": 0}
    command = " ".join(root.cmdline())
    return {"server": "gunicorn" if children and "--debug" not in command else "flask-debug",
            "processes": 1 + len(children), "worker_processes": len(children)}


def bench_bodies(users: int, count: int = 2000) -> list[bytes]:
    """The demo mix, each request with a notificationId of its own (numbered as it is sent), so
    the edge does the work of a first request, not the answer to a repeat."""
    marker = SEQUENCE_MARKER.decode()
    return [json.dumps({**body, "notificationId": f"ingest-{marker}"}).encode()
            for body in make_requests(count, users, seed=11, duplicate_rate=0.0)]


def start_peer(log_dir: Path, process_env: Mapping[str, str]) -> tuple[Any, str]:
    """The peer function on a free port, with the stack's endpoints (in this process's
    environment) and the repository on its PYTHONPATH."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = processes.start(Service(
        "peer-function",
        [str(Path(sys.executable).with_name("functions-framework")), "--target=notifications",
         f"--source={PEER_SOURCE}", "--host=127.0.0.1", f"--port={port}"],
        http_ready(f"{url}/healthz"), env={"PYTHONPATH": str(REPO_ROOT), **process_env}),
        log_dir)
    return process, url


def _run_one(url: str, bodies: list[bytes], api_key: str, config: IngestConfig,
             trees: dict[str, int]) -> dict[str, Any]:
    """One closed-loop run; with op counting, the function tree's Google Cloud operations and
    CPU seconds over the whole run (warm-up included), for the cost figures."""
    function_pids = lambda: [trees["function"], *(child.pid for child in psutil.Process(  # noqa: E731
        trees["function"]).children(recursive=True))]
    before = opcount.totals(config.opcount_dir, function_pids()) if config.opcount_dir else None
    with CpuWindow(trees) as cpu:
        result: ClosedLoopResult = closed_loop(
            url, PATH, bodies, connections=config.connections, warmup_s=config.warmup_s,
            duration_s=config.duration_s, headers={"Authorization": f"Bearer {api_key}"})
    latency = summarize(result.latencies_s)
    out = {
        "requests_per_s": round(result.rate, 1),
        "ok": result.ok,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "latency": latency.to_json(),
        "p50_ms": None if latency.p50 is None else round(latency.p50 * 1000, 2),
        "p99_ms": None if latency.p99 is None else round(latency.p99 * 1000, 2),
        "generator_cpu_cores": round(result.generator_cpu_s / result.wall_s, 3),
        "cpu_cores": {name: round(value, 3) for name, value in cpu.cores.items()
                      if name != "bench_total"},
        "function_cpu_seconds": round(cpu.cores["function"] * cpu.wall_s, 2),
        "machine_busy_cores": round(cpu.machine_cores, 2),
        "other_work_cores": round(cpu.other_cores, 2),
    }
    if before is not None:
        time.sleep(1.0)  # the workers write their counts every half second
        out["operations"] = opcount.difference(
            opcount.totals(config.opcount_dir, function_pids()), before)
    return out


def run(env: dict[str, str], pids: dict[str, int], log_dir: Path, config: IngestConfig,
        sampler: RssSampler, cleanup: list[Callable[[], None]], profiler: Profiler,
        say: Callable[[str], None]) -> dict[str, Any]:
    bodies = bench_bodies(config.users)
    ingest_pid = pids["ingest-function"]
    out: dict[str, Any] = {
        "connections": config.connections, "warmup_s": config.warmup_s,
        "duration_s": config.duration_s, "server_settings": server_settings(),
        "ingest_server": describe_server(ingest_pid)}
    trees = {"function": ingest_pid, "pubsub_emulator": pids["pubsub-emulator"]}
    say(f"ingest: {config.connections} connections, {config.warmup_s:g}s warm-up + "
        f"{config.duration_s:g}s against POST {PATH} ...")
    # CPU samples only (no --idle): gunicorn's threads mostly wait for requests.
    with profiler.record("ingest", "ingest function (gunicorn arbiter, its workers by "
                         "--subprocesses), during the measured window", ingest_pid,
                         config.duration_s, delay_s=config.warmup_s, subprocesses=True,
                         views={"All processes, CPU samples only (no --idle)": None}):
        out["ingest"] = _run_one(env["HERALD_API_URL"], bodies, env["HERALD_API_KEY"], config,
                                 trees)
    say(f"  {out['ingest']['requests_per_s']} req/s, p99 {out['ingest']['p99_ms']} ms")

    process, url = start_peer(log_dir, config.process_env)
    cleanup.append(lambda: processes.stop_group(process.pid))
    sampler.track("peer_function", process.pid)
    try:
        out["peer_server"] = describe_server(process.pid)
        say("ingest: the same load against the peer function (validate, publish) ...")
        out["peer"] = _run_one(url, bodies, env["HERALD_API_KEY"], config,
                               {"function": process.pid, "pubsub_emulator": pids["pubsub-emulator"]})
        say(f"  {out['peer']['requests_per_s']} req/s, p99 {out['peer']['p99_ms']} ms")
    finally:
        sampler.untrack("peer_function")
        processes.stop_group(process.pid)
    peer_rate = out["peer"]["requests_per_s"]
    out["ratio_to_peer"] = round(out["ingest"]["requests_per_s"] / peer_rate, 3) \
        if peer_rate else None
    return out
