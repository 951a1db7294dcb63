"""Peak resident memory of process trees, sampled by a daemon thread (psutil) over the whole run.

A tree is a root pid plus all its descendants at sampling time (gunicorn's arbiter and workers;
the pipeline and anything it forks). The pipeline is restarted per phase, so trees are tracked
and untracked by name while the sampler runs; the peak per name survives the restarts.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil

SAMPLE_S = 0.25


def _tree_sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over a process and its live descendants (0 if it is gone); a member
    that exits while being read is skipped."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0.0
    for member in members:
        try:
            total += measure(member)
        except psutil.Error:
            continue
    return total


def tree_rss(pid: int) -> int:
    """Sum of RSS over a process and its live descendants, in bytes (0 if it is gone)."""
    return int(_tree_sum(pid, lambda member: member.memory_info().rss))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants so far."""
    return _tree_sum(pid, lambda member: sum(member.cpu_times()[:2]))


@dataclass
class Peak:
    bytes: int = 0
    samples: int = 0

    @property
    def mib(self) -> float:
        return self.bytes / (1 << 20)


class RssSampler:
    """`track(name, pid)`; `peaks()` gives the largest tree RSS seen per name."""

    def __init__(self, interval_s: float = SAMPLE_S) -> None:
        self._interval = interval_s
        self._tracked: dict[str, int] = {}
        self._peaks: dict[str, Peak] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def track(self, name: str, pid: int) -> None:
        with self._lock:
            self._tracked[name] = pid
            self._peaks.setdefault(name, Peak())
        self._sample_one(name, pid)

    def untrack(self, name: str) -> None:
        with self._lock:
            pid = self._tracked.pop(name, None)
        if pid is not None:
            self._sample_one(name, pid)

    def _sample_one(self, name: str, pid: int) -> None:
        rss = tree_rss(pid)
        with self._lock:
            peak = self._peaks.setdefault(name, Peak())
            peak.samples += 1
            peak.bytes = max(peak.bytes, rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                tracked = list(self._tracked.items())
            for name, pid in tracked:
                self._sample_one(name, pid)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def peaks(self) -> dict[str, Peak]:
        with self._lock:
            return {name: Peak(peak.bytes, peak.samples) for name, peak in self._peaks.items()}

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class CpuWindow:
    """Cores used, on average between enter and exit, by named process trees, by everything the
    bench started (its own process tree: the stack's services are its children too), by the whole
    machine, and by the rest (`other_cores`: work on the machine that is not the bench's)."""

    def __init__(self, trees: dict[str, int]) -> None:
        self._trees = {**trees, "bench_total": os.getpid()}
        self._start: dict[str, float] = {}
        self._machine0: psutil._common.scputimes | None = None
        self._t0 = 0.0

    def __enter__(self) -> CpuWindow:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self._trees.items()}
        self._machine0 = psutil.cpu_times()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.cores = {name: (tree_cpu_seconds(pid) - self._start[name]) / self.wall_s
                      for name, pid in self._trees.items()}
        machine1 = psutil.cpu_times()
        busy = lambda t: t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
        self.machine_cores = (busy(machine1) - busy(self._machine0)) / self.wall_s
        self.other_cores = max(0.0, self.machine_cores - self.cores["bench_total"])
