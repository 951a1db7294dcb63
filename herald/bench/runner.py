"""`herald bench`: bring up a private local stack, run every part within a hard time limit, always
bring the stack down, write bench/results.json and bench/RESULTS.md, print the bars.

Parts, in order: ingest (Herald's function and the peer function; no pipeline reading), pipeline
at each offered rate (fresh pipeline and subscription each), backlog (Herald's pipeline and the
peer worker drain the same pre-filled backlog), growth (Herald on a larger backlog), priority,
bulk email, faults (Herald and the peer with 20% transient provider faults); then the cost, from
the operations counted in the ingest and backlog parts (herald/bench/opcount.py). A part that
fails is recorded and the next one still runs; the hard timeout (SIGALRM) stops the run, and the
stack still comes down and the partial results are still written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("ingest", "pipeline", "backlog", "faults", "priority", "bulk", "growth")


NO_RECONCILER = {"HERALD_RECONCILE_EVERY_S": "0"}
"""The stack's scheduler runs without the reconciler: every part publishes requests that its own
window does not finish (the ingest part's are never read at all), and ten minutes on (its grace)
the reconciler republished them, 1,971 at once in a full run, into whichever part was then
running, and queried the BigQuery emulator for tens of thousands of traces a minute meanwhile."""


class BenchTimeout(Exception):
    """The run hit its hard overall time limit."""


@dataclass(frozen=True)
class Durations:
    ingest_warmup_s: float
    ingest_duration_s: float
    pipeline_duration_s: float
    grace_s: float
    bulk_timeout_s: float
    backlog_requests: int
    backlog_watch_s: float
    growth_requests: int
    growth_watch_s: float
    faults_requests: int
    faults_watch_s: float


FULL = Durations(ingest_warmup_s=5, ingest_duration_s=30, pipeline_duration_s=120, grace_s=20,
                 bulk_timeout_s=150, backlog_requests=5000, backlog_watch_s=150,
                 growth_requests=50_000, growth_watch_s=180, faults_requests=1000,
                 faults_watch_s=150)
QUICK = Durations(ingest_warmup_s=2, ingest_duration_s=8, pipeline_duration_s=12, grace_s=8,
                  bulk_timeout_s=75, backlog_requests=1000, backlog_watch_s=40,
                  growth_requests=4000, growth_watch_s=40, faults_requests=200,
                  faults_watch_s=60)


@dataclass
class BenchConfig:
    mode: str
    parts: tuple[str, ...]
    users: int
    connections: int
    rates: tuple[float, ...]
    bulk_recipients: int
    durations: Durations
    out_dir: Path
    workers: int | None = None
    threads: int | None = None
    pipeline_workers: int = 1
    timeout_s: float | None = None
    keep_state: bool = False
    strict: bool = False
    profile: bool = False

    def estimate_s(self) -> float:
        """About the longest the run should take (parts that wait end early when done); the
        default hard timeout is built on it."""
        d = self.durations
        total = 40.0  # stack up (emulators, seeding 2,000 users) and down
        if "ingest" in self.parts:
            total += 2 * (d.ingest_warmup_s + d.ingest_duration_s) + 15
        if "pipeline" in self.parts:
            total += sum(15 + d.pipeline_duration_s + 20 + d.grace_s for _ in self.rates)
        if "backlog" in self.parts:
            total += 2 * (30 + d.backlog_watch_s)
        if "growth" in self.parts:
            total += 30 + d.backlog_watch_s + 30 + d.growth_requests / 1000 + d.growth_watch_s
        if "priority" in self.parts:
            total += 240
        if "bulk" in self.parts:
            total += 15 + d.bulk_timeout_s
        if "faults" in self.parts:
            total += 2 * (30 + d.faults_watch_s)
        return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `herald bench` flags (kept import-light: the CLI builds its parser on every command)."""
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (seconds per part instead of a minute); writes "
                             "bench/results-quick.json and bench/RESULTS-quick.md")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--rates", default="50,185",
                        help="offered loads for the pipeline part, requests/s (default 50,185)")
    parser.add_argument("--pipeline-duration-s", type=float,
                        help="seconds of paced load per rate (default 120; 12 with --quick)")
    parser.add_argument("--pipeline-workers", type=int, default=1,
                        help="delivery processes sharing a subscription, for Herald's pipeline "
                             "and the peer worker alike (default 1)")
    parser.add_argument("--backlog-requests", type=int, default=None,
                        help="the pre-filled backlog both drain (default 5000; 1000 quick)")
    parser.add_argument("--ingest-duration-s", type=float,
                        help="measured seconds per ingest target (default 30; 8 with --quick)")
    parser.add_argument("--grace-s", type=float,
                        help="how long to keep watching the ledger after the load (default 20)")
    parser.add_argument("--connections", type=int, default=32,
                        help="closed-loop connections for the ingest part (default 32)")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers for both functions (sets WORKERS; default: the "
                             "environment's WORKERS, else functions-framework's 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="gunicorn threads per worker (sets THREADS; default: the "
                             "environment's THREADS, else the local stack's 32)")
    parser.add_argument("--users", type=int, default=2000, help="users to seed (default 2000)")
    parser.add_argument("--bulk-recipients", type=int, default=1000)
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="hard limit for the whole run (default: 1.5x the estimate + 2 min)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the private state dir (logs) after the run")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 if any bar fails or is not measured (default: exit 0 when "
                             "the run completed, whatever the verdicts)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profiles of the ingest function and the backlog pipeline "
                             "during their windows: bench/profile-<part>.raw and bench/PROFILE.md "
                             "(PROFILE-quick.md with --quick)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    base = QUICK if args.quick else FULL
    durations = Durations(
        ingest_warmup_s=base.ingest_warmup_s,
        ingest_duration_s=args.ingest_duration_s or base.ingest_duration_s,
        pipeline_duration_s=args.pipeline_duration_s or base.pipeline_duration_s,
        grace_s=base.grace_s if args.grace_s is None else args.grace_s,
        bulk_timeout_s=base.bulk_timeout_s,
        backlog_requests=args.backlog_requests or base.backlog_requests,
        backlog_watch_s=base.backlog_watch_s,
        growth_requests=base.growth_requests, growth_watch_s=base.growth_watch_s,
        faults_requests=base.faults_requests, faults_watch_s=base.faults_watch_s)
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"herald bench: unknown parts {sorted(unknown)}; choose from {PARTS}")
    return BenchConfig(
        mode="quick" if args.quick else "full", parts=parts, users=args.users,
        connections=args.connections,
        rates=tuple(float(rate) for rate in args.rates.split(",") if rate.strip()),
        bulk_recipients=args.bulk_recipients, durations=durations, out_dir=args.out_dir,
        workers=args.workers, threads=args.threads, pipeline_workers=args.pipeline_workers,
        timeout_s=args.timeout_s,
        keep_state=args.keep_state, strict=args.strict, profile=args.profile)


def machine_meta() -> dict[str, Any]:
    import psutil

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    before = psutil.cpu_times()
    time.sleep(2.0)
    after = psutil.cpu_times()
    busy = lambda t: t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "platform": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "background_busy_cores": round((busy(after) - busy(before)) / 2.0, 2),
    }


def _print_verdicts(verdicts: list[dict[str, Any]], say: Callable[[str], None]) -> None:
    width = max(len(v["label"]) for v in verdicts)
    for verdict in verdicts:
        say(f"  {verdict['verdict']:<12} {verdict['label']:<{width}}  {verdict['value']}  "
            f"(bar {verdict['threshold']})")


def run_bench(config: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    from herald.bench import bulk, cost, ingest, opcount, pipeline, priority, report
    from herald.bench.memory import RssSampler
    from herald.bench.profile import Profiler
    from herald.local import stack
    from herald.settings import Settings

    started = time.monotonic()
    timeout_s = config.timeout_s or config.estimate_s() * 1.5 + 120
    results: dict[str, Any] = {"meta": {"mode": config.mode}, "errors": []}
    results["config"] = {**{k: v for k, v in asdict(config).items() if k != "durations"},
                         **asdict(config.durations), "timeout_s": timeout_s,
                         "out_dir": str(config.out_dir)}
    say(f"herald bench ({config.mode}): parts {', '.join(config.parts)}; at most about "
        f"{config.estimate_s() / 60:.0f} min, hard limit {timeout_s / 60:.0f} min")
    results["meta"].update(machine_meta())
    say(f"machine: {results['meta']['cpu_count']} cores, {results['meta']['background_busy_cores']} "
        "busy before start")
    if config.workers is not None:
        os.environ["WORKERS"] = str(config.workers)
    from herald.local.stack import FUNCTION_THREADS
    # Both functions get the same threads: the flag, else the environment, else the stack's.
    os.environ["THREADS"] = str(config.threads or os.environ.get("THREADS", FUNCTION_THREADS))
    os.environ.pop("DEBUG", None)  # functions-framework would run Flask's debug server instead

    def on_alarm(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"hard timeout of {timeout_s:.0f}s reached")

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGALRM, on_alarm), (signal.SIGTERM, on_term))}
    signal.alarm(int(timeout_s))
    (REPO_ROOT / ".herald").mkdir(exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=REPO_ROOT / ".herald"))
    log_dir = state_dir / "logs"
    cleanup: list[Callable[[], None]] = []
    opcount_dir = state_dir / "opcount"
    hook = opcount.hook_environment(opcount_dir, REPO_ROOT)
    sampler = RssSampler().start()
    profiler = Profiler(config.out_dir if config.profile else None)
    try:
        say(f"starting a private local stack in {state_dir} (seeding {config.users} users) ...")
        env = stack.up(stack.StackOptions(state_dir=state_dir, seed_users=config.users,
                                          with_pipeline=False, sandbox_latency_ms=100,
                                          service_env={**hook, **NO_RECONCILER}),
                       report=lambda line: None)
        settings = Settings.from_env(env)
        pids = stack.running_pids(state_dir)
        sampler.track("ingest_function", pids["ingest-function"])
        results["stack"] = {"startup_s": round(time.monotonic() - started, 1),
                            "sandbox_latency_ms": 100, "seeded_users": config.users}

        def part(name: str, body: Callable[[], Any]) -> None:
            try:
                if name != "ingest":  # the ingest part writes no rows
                    pipeline.empty_tables(settings)
                outcome = body()
                if outcome is not None:
                    results[name] = outcome
            except (BenchTimeout, KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # noqa: BLE001 - record it, run the next part
                results["errors"].append(f"{name}: {type(error).__name__}: {error}")
                say(f"{name} failed: {type(error).__name__}: {error}")

        if "ingest" in config.parts:
            part("ingest", lambda: ingest.run(
                env, pids, log_dir, ingest.IngestConfig(
                    config.connections, config.durations.ingest_warmup_s,
                    config.durations.ingest_duration_s, config.users, opcount_dir, hook),
                sampler, cleanup, profiler, say))
        # Nothing reads the stack's default subscriptions in the bench; drop what ingest left there.
        for lane in settings.lanes():
            pipeline.delete_subscription(lane, lane.requests_subscription)
        pipeline_config = pipeline.PipelineConfig(
            config.rates, config.durations.pipeline_duration_s, config.durations.grace_s,
            config.users, backlog_requests=config.durations.backlog_requests,
            backlog_watch_s=config.durations.backlog_watch_s,
            faults_requests=config.durations.faults_requests,
            faults_watch_s=config.durations.faults_watch_s,
            workers=config.pipeline_workers, process_env=hook)
        size = config.durations.backlog_requests
        if "pipeline" in config.parts:
            phases = results["pipeline"] = {}
            for rate in config.rates:
                part(f"pipeline@{rate:g}/s", lambda rate=rate: phases.__setitem__(
                    f"rate_{rate:g}", pipeline.run_rate(rate, env, settings, log_dir,
                                                        pipeline_config, sampler, cleanup, say)))
        if "backlog" in config.parts:
            drains = results["backlog"] = {}
            for kind in pipeline.KINDS:
                say(f"backlog: {kind} draining {size} pre-filled requests ...")
                part(f"backlog_{kind}", lambda kind=kind: drains.__setitem__(kind, pipeline.run_drain(
                    kind, f"{kind}-{size}", size, config.durations.backlog_watch_s, env, settings,
                    log_dir, pipeline_config, sampler, cleanup, profiler, say, opcount_dir)))
            herald_rate, peer_rate = (drains.get(k, {}).get("rate_per_s") for k in pipeline.KINDS)
            drains["ratio"] = round(herald_rate / peer_rate, 3) if herald_rate and peer_rate \
                else None
        if "faults" in config.parts:
            faults = results["faults"] = {}
            for kind in pipeline.KINDS:
                part(f"faults_{kind}", lambda kind=kind: faults.__setitem__(kind, pipeline.run_faults(
                    kind, env, settings, log_dir, pipeline_config, sampler, cleanup, say)))
        if "priority" in config.parts:
            part("priority", lambda: priority.run(
                env, settings, log_dir, pipeline_config, sampler, cleanup, say))
        if "bulk" in config.parts:
            part("bulk", lambda: bulk.run(
                env, settings, log_dir, bulk.BulkConfig(
                    config.bulk_recipients, config.users, config.durations.bulk_timeout_s),
                sampler, cleanup, say))
        # Last, the part that writes the most rows (bench/README.md, "Order of the parts").
        if "growth" in config.parts:
            growth = results["growth"] = {}
            large = config.durations.growth_requests
            # Its own small drain, right before the large one: both on the emulator as it is now
            # (the backlog part's figure was taken on a fresher, faster one).
            say(f"growth: Herald draining {size} pre-filled requests ...")
            part("growth_small", lambda: growth.__setitem__("small", pipeline.run_drain(
                "herald", f"herald-growth-{size}", size, config.durations.backlog_watch_s, env,
                settings, log_dir, pipeline_config, sampler, cleanup, None, say)))
            say(f"growth: Herald draining {large} pre-filled requests ...")
            part("growth_large", lambda: growth.__setitem__("large", pipeline.run_drain(
                "herald", f"herald-{large}", large, config.durations.growth_watch_s, env,
                settings, log_dir, pipeline_config, sampler, cleanup, None, say)))
        results["cost"] = cost.from_results(results)
    except BenchTimeout as error:
        results["errors"].append(str(error))
        say(f"herald bench: {error}; stopping")
    except (KeyboardInterrupt, SystemExit) as error:
        results["errors"].append(f"interrupted ({type(error).__name__})")
        raise
    except Exception as error:  # noqa: BLE001 - the stack failed to start, or similar
        results["errors"].append(f"{type(error).__name__}: {error}")
        say(f"herald bench: {type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        for stop in reversed(cleanup):
            try:
                stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                pass
        sampler.stop()
        try:
            stack.down(state_dir, report=lambda line: None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            results["memory_peak_bytes"] = {name: peak.bytes for name, peak in
                                            sampler.peaks().items()}
            if profiler.profiles:
                results["profiles"] = profiler.profiles
            results["meta"]["wall_s"] = round(time.monotonic() - started, 1)
            results["verdicts"] = report.evaluate(results)
            say(f"wrote {', '.join(map(str, report.write(results, config.out_dir)))}")
            for name, taken in profiler.profiles.items():
                if "error" in taken:
                    say(f"no {name} profile: {taken['error']}")
            # A profile that could not be taken is no reason to keep the stack's logs.
            phase_errors = [name for name, value in results.items() if isinstance(value, dict)
                            and name != "profiles"
                            and ("error" in value or any(isinstance(v, dict) and "error" in v
                                                         for v in value.values()))]
            if not config.keep_state and not results["errors"] and not phase_errors:
                import shutil
                shutil.rmtree(state_dir, ignore_errors=True)
            else:
                say(f"logs kept in {log_dir}")
    return results


def main(args: argparse.Namespace) -> int:
    """Run, print the bars; 1 if the run itself failed, 2 with --strict and a bar not passed."""
    config = config_from_args(args)
    t0 = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {line}", flush=True)

    results = run_bench(config, say)
    say("bars:")
    _print_verdicts(results["verdicts"], say)
    if results["errors"]:
        say("errors: " + json.dumps(results["errors"]))
        return 1
    if config.strict and any(v["verdict"] != "PASS" for v in results["verdicts"]):
        return 2
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m herald.bench.runner")
    add_arguments(cli)
    sys.exit(main(cli.parse_args()))
