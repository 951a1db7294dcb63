"""`herald local up` / `herald local down`: the whole product on one machine, on real emulators.

`up` starts Google's Pub/Sub and Firestore emulators, the BigQuery emulator, the provider sandbox,
the ingest function under functions-framework, the scheduled jobs (`scheduler.py`: the outbox
replay and the reconciler, as Cloud Scheduler runs them in production) and the streaming pipelines
on DirectRunner, each under a supervisor that restarts it if it dies (`supervisor.py`), each on a
free port of 127.0.0.1; provisions topics and tables; writes the endpoints to `<state>/local.env`
and the process-group ids it started to `<state>/pids.json`. `down` stops exactly those groups.
Logs: `<state>/logs/<service>.log`, and `stack.log` for what the stack itself did (restarts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import psutil
import requests

from herald.local import processes, provision, scheduler
from herald.local.processes import Service, StackError, free_port, http_ready, tcp_ready
from herald.local.supervisor import supervised
from herald.settings import DEFAULT_LOCAL_API_KEY, DEFAULT_LOCAL_CLIENT, Settings
from pipelines.launch import RUNNING_MARKER

FUNCTION_THREADS = 32
"""Requests one ingest function instance serves at once: gunicorn's THREADS here, Cloud Functions
gen2's `max_instance_request_concurrency` when deployed. Its requests mostly wait for Firestore and
Pub/Sub, and concurrent ones share Firestore calls (ingest_function/write_batcher.py), so it is
well above functions-framework's default of 4 per core: `herald bench --quick --parts ingest
--threads N` measured 308 requests/s with 8, 586 with 32 and 688 with 64 (32 connections)."""

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path(".herald")
SANDBOX_OUTCOMES = {
    "fcm": {"delivered": 0.9, "received": 0.6, "opened": 0.3},
    "twilio": {"undelivered": 0.03, "failed": 0.01},
    "sendgrid": {"bounce": 0.02, "dropped": 0.01, "deferred": 0.03, "open": 0.4, "click": 0.25},
}
"""Callback outcomes the local sandbox reports (and, for push, the share of Android pushes FCM's
BigQuery export reports delivered, and of pushes whose app posts received and opened receipts), so
the funnel and failure marts have something to show; faults (429s, 5xx, timeouts) stay off unless a
test or `POST /_config` turns them on."""
PIPELINES = (("pipeline", "pipelines.herald_pipeline", ()),
             ("urgent-pipeline", "pipelines.herald_pipeline", ("--lane", "urgent")),
             ("callbacks-pipeline", "pipelines.callback_pipeline", ()))
"""The streaming jobs: deliveries of normal and low priority, deliveries of high priority (its
own topic and job, so no routine backlog delays it), and provider callbacks; with their flags."""
STACK_LOG = "stack.log"
"""In the log directory: what the stack itself did, such as restarting a pipeline that died."""
PROJECT = "herald-local"
DATASET = "herald"


def pipeline_service(name: str, module: str, env: Mapping[str, str], log_dir: Path,
                     args: Sequence[str] = (), timeout_s: float = 60.0) -> Service:
    """A streaming pipeline process as the stack runs it (the bench starts more on its own
    subscriptions): ready once it has logged that its graph is built."""
    return Service(name, processes.python_module(module, "--streaming", *args),
                   processes.log_contains(log_dir / f"{name}.log", RUNNING_MARKER),
                   env={"PYTHONPATH": str(REPO_ROOT), **env}, timeout_s=timeout_s)


SCALED_PIPELINE = "pipeline"
"""The one of PIPELINES that `pipeline_workers` scales out (routine deliveries)."""


def worker_names(base: str, workers: int) -> list[str]:
    """Names of `workers` processes of one job: `base`, `base-2`, `base-3`, ..."""
    return [base, *(f"{base}-{index}" for index in range(2, workers + 1))]


def default_state_dir() -> Path:
    return Path(os.environ.get("HERALD_STATE_DIR", DEFAULT_STATE_DIR))


@dataclass(frozen=True)
class StackOptions:
    """What `up` starts; tests turn off the pipeline to drive it themselves."""

    state_dir: Path
    seed_users: int = 0
    with_pipeline: bool = True
    sandbox_latency_ms: int = 100
    pipeline_args: tuple[str, ...] = ()
    pipeline_workers: int = 1
    """Processes of the routine delivery pipeline sharing its subscription, as Dataflow scales a
    job out to workers (durable send claims keep them from sending a delivery twice)."""
    service_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Added to the ingest function's and scheduler's environment (the bench's op counting)."""


def read_env(state_dir: Path) -> dict[str, str]:
    """The KEY=VALUE lines `up` wrote."""
    env_file = state_dir / "local.env"
    if not env_file.exists():
        raise StackError(f"no local stack at {state_dir} (run `herald local up`)")
    pairs = (line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def running_pids(state_dir: Path) -> dict[str, int]:
    """Process groups of a stack that still have live members."""
    pid_file = state_dir / "pids.json"
    if not pid_file.exists():
        return {}
    pids = json.loads(pid_file.read_text())
    return {name: pid for name, pid in pids.items() if processes.group_members(pid)}


def _bqemulator_command(rest: int, grpc: int) -> list[str]:
    executable = Path(sys.executable).with_name("bqemulator")
    if not executable.exists():
        raise StackError("bqemulator is not installed in this environment: "
                         "pip install -e '.[local]' (see README)")
    return [str(executable), "start", "--rest-host", "127.0.0.1", "--rest-port", str(rest),
            "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc), "--project", PROJECT,
            "--log-level", "warning"]


def _install_duckdb_spatial() -> None:
    """bqemulator loads DuckDB's spatial extension at start and would download it; the PyPI
    package ships it, so install it from there first (offline, idempotent)."""
    subprocess.run([sys.executable, "-c", "from duckdb_extensions import import_extension;"
                    "import_extension('spatial')"], check=True, capture_output=True)


def _sandbox_public_key(sandbox_url: str) -> str:
    """The key the sandbox signs SendGrid events with (a new one each start), for the ingest
    function to verify them with, as the key from SendGrid's dashboard is in production."""
    response = requests.get(f"{sandbox_url}/_keys", timeout=5)
    response.raise_for_status()
    return response.json()["sendgrid_webhook_public_key"]


def up(options: StackOptions, report: Callable[[str], None] = print) -> dict[str, str]:
    """Start the stack; returns the endpoints (also written to local.env). Refuses a second stack
    in the same state dir."""
    state_dir = options.state_dir.resolve()  # its services run in its logs directory
    already = running_pids(state_dir)
    if already:
        raise StackError(f"a local stack is already running from {state_dir} "
                         f"({', '.join(already)}); `herald local down` first")
    processes.require_cloud_sdk_emulators()
    if shutil.which("java") is None:
        raise StackError("Java 17+ is required by Google's emulators and was not found on PATH")
    _install_duckdb_spatial()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    ports = {name: free_port() for name in ("pubsub", "firestore", "bq", "bq_grpc", "sandbox", "api")}
    env = {
        "HERALD_PROJECT": PROJECT,
        "HERALD_DATASET": DATASET,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{ports['pubsub']}",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports['firestore']}",
        "BIGQUERY_API_ENDPOINT": f"http://127.0.0.1:{ports['bq']}",
        "HERALD_SANDBOX_URL": f"http://127.0.0.1:{ports['sandbox']}",
        "HERALD_API_URL": f"http://127.0.0.1:{ports['api']}",
        "HERALD_API_KEY": DEFAULT_LOCAL_API_KEY,
        "HERALD_API_KEYS": f"{DEFAULT_LOCAL_API_KEY}:{DEFAULT_LOCAL_CLIENT}",
    }
    services = [
        Service("pubsub-emulator", [str(processes.PUBSUB_EMULATOR), "--host=127.0.0.1",
                                    f"--port={ports['pubsub']}"], tcp_ready(ports["pubsub"])),
        Service("firestore-emulator", [str(processes.FIRESTORE_EMULATOR), "start",
                                       "--host=127.0.0.1", f"--port={ports['firestore']}"],
                http_ready(f"http://127.0.0.1:{ports['firestore']}/")),
        Service("bigquery-emulator", _bqemulator_command(ports["bq"], ports["bq_grpc"]),
                http_ready(f"{env['BIGQUERY_API_ENDPOINT']}/bigquery/v2/projects/{PROJECT}/datasets")),
        Service("provider-sandbox",
                processes.python_module("herald.sandbox", "--host", "127.0.0.1",
                                        "--port", str(ports["sandbox"]), "--project", PROJECT,
                                        "--latency-ms", str(options.sandbox_latency_ms),
                                        "--faults", json.dumps(SANDBOX_OUTCOMES),
                                        "--sendgrid-webhook-url",
                                        f"{env['HERALD_API_URL']}/v1/callbacks/sendgrid",
                                        "--twilio-incoming-url",
                                        f"{env['HERALD_API_URL']}/v1/callbacks/twilio/incoming",
                                        "--receipts-url", f"{env['HERALD_API_URL']}/v1/receipts"),
                http_ready(f"{env['HERALD_SANDBOX_URL']}/_health"), env=env),
    ]
    started: dict[str, int] = {}

    def launch(service: Service) -> None:
        report(f"starting {service.name} ...")
        process = processes.start(service, log_dir)
        started[service.name] = process.pid
        (state_dir / "pids.json").write_text(json.dumps(started, indent=2))

    try:
        for service in services:
            launch(service)
        env["SENDGRID_WEBHOOK_PUBLIC_KEY"] = _sandbox_public_key(env["HERALD_SANDBOX_URL"])
        service_env = {**env, "PYTHONPATH": str(REPO_ROOT),
                       "THREADS": os.environ.get("THREADS", str(FUNCTION_THREADS)),
                       **options.service_env}
        settings = Settings.from_env(env)
        os.environ.update(env)
        provision.create_topics(settings)
        provision.create_tables(settings)
        if options.seed_users:
            from herald.clients import firestore_client
            from herald.local.seed import seed

            written = seed(firestore_client(settings), options.seed_users)
            report(f"seeded {options.seed_users} users ({written} documents) into Firestore")
        launch(Service(
            "ingest-function",
            [str(Path(sys.executable).with_name("functions-framework")),
             "--target=notifications", f"--source={REPO_ROOT / 'ingest_function' / 'main.py'}",
             "--host=127.0.0.1", f"--port={ports['api']}"],
            http_ready(f"{env['HERALD_API_URL']}/healthz"), env=service_env))
        launch(Service("scheduler", processes.python_module("herald.local.scheduler"),
                       processes.log_contains(log_dir / "scheduler.log", scheduler.RUNNING_MARKER),
                       env=service_env))
        if options.with_pipeline:
            for base, module, args in PIPELINES:
                workers = options.pipeline_workers if base == SCALED_PIPELINE else 1
                for name in worker_names(base, workers):
                    launch(supervised(pipeline_service(name, module, env, log_dir,
                                                       (*args, *options.pipeline_args)),
                                      log_dir / STACK_LOG))
    except BaseException:
        down(state_dir, report=lambda _: None)
        raise
    lines = [f"{key}={value}" for key, value in env.items()]
    (state_dir / "local.env").write_text("\n".join(lines) + "\n")
    for line in lines:
        report(line)
    return env


@contextlib.contextmanager
def running(state_dir: Path, seed_users: int = 300, **environ: str) -> Iterator[dict[str, str]]:
    """A seeded stack for the length of a with-block (tests), its services started with `environ`
    added; yields the endpoints plus HERALD_STATE_DIR, which are also in os.environ (where Google's
    clients read the emulator hosts) until the block ends and the environment is restored."""
    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        env = up(StackOptions(state_dir=state_dir, seed_users=seed_users), report=lambda _: None)
        os.environ.update(env)
        yield {**env, "HERALD_STATE_DIR": str(state_dir)}
    finally:
        down(state_dir, report=lambda _: None)
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def frozen(state_dir: Path, name: str = "pubsub-emulator") -> Iterator[None]:
    """One of the stack's services stopped (SIGSTOP) for the length of a with-block, then resumed
    (SIGCONT): unavailable with its state kept, which is what a Pub/Sub outage is (killing the
    in-memory emulator would model a data loss Pub/Sub does not have)."""
    group = running_pids(state_dir)[name]
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def pipeline_pid(state_dir: Path, name: str = "pipeline") -> int:
    """The pid of one of the stack's pipeline processes: its supervisor's child, a new one after
    each restart (the process group `pids.json` records is the supervisor's, and stays). Raises
    ValueError while the supervisor waits to restart it."""
    [child] = psutil.Process(running_pids(state_dir)[name]).children()
    return child.pid


def crash_pipeline(state_dir: Path, name: str = "pipeline", timeout_s: float = 120.0) -> int:
    """SIGKILL one of the stack's pipeline processes, as a crash would (no cleanup, nothing
    flushed), and wait until its supervisor has restarted it and the new one runs (its log shows
    the running marker once more); returns the new process's pid."""
    log = state_dir / "logs" / f"{name}.log"
    runs = log.read_text(errors="replace").count(RUNNING_MARKER)
    os.kill(pipeline_pid(state_dir, name), signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while log.read_text(errors="replace").count(RUNNING_MARKER) <= runs:
        if time.monotonic() > deadline:
            raise StackError(f"{name} was not restarted within {timeout_s:g} s (log {log})")
        time.sleep(0.2)
    return pipeline_pid(state_dir, name)


def down(state_dir: Path, report: Callable[[str], None] = print) -> list[str]:
    """Stop the process groups `up` recorded, newest first, and forget them."""
    pid_file = state_dir / "pids.json"
    if not pid_file.exists():
        report(f"no local stack recorded in {state_dir}")
        return []
    pids = json.loads(pid_file.read_text())
    for name, pid in reversed(list(pids.items())):
        report(f"stopping {name} (process group {pid})")
        processes.stop_group(pid)
    pid_file.unlink()
    (state_dir / "local.env").unlink(missing_ok=True)
    return list(pids)
