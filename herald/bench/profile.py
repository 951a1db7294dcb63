"""`herald bench --profile`: py-spy profiles of the process a part measures, taken during that
part's own window, so that a bar the DirectRunner cannot meet comes with where the time goes, from
the same run and reproducible, instead of a profile somebody once took by hand.

py-spy attaches to a running pid from outside (nothing changes in the code under test) and writes
its raw format: one collapsed stack a line, root first, `frame;frame;... COUNT`. With --subprocesses
a stack starts with its processes (`process PID:"CMDLINE"`), with --threads then the thread
(`thread (TID): NAME`); every other frame is `function (path/file.py:LINE)`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

RATE_HZ = 100
MAX_DURATION_S = 15.0
"""1,500 samples a thread at 100 Hz: shares to within a few percent, and a short extra load on a
machine the bench already shares with everything it measures."""
EXECUTOR_THREAD = "ExecutorServiceWorker"
"""The streaming DirectRunner's one worker thread (`Thread: 0, ExecutorServiceWorker-0 (...)`)."""
STOP_TIMEOUT_S = 10.0
TOP_INCLUSIVE = 25
TOP_SELF = 10
_PROCESS_FRAME = re.compile(r'process \d+:"')
_THREAD_FRAME = re.compile(r"thread \((\d+)\)")


# --- recording -----------------------------------------------------------------------------------

def find_py_spy() -> str | None:
    """py-spy beside the bench's python (pip puts it in the venv's bin, and `.venv/bin/herald` runs
    without the venv activated), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def py_spy_flags(*, threads: bool, idle: bool, subprocesses: bool) -> tuple[str, ...]:
    chosen = (("--threads", threads), ("--idle", idle), ("--subprocesses", subprocesses))
    return tuple(flag for flag, wanted in chosen if wanted)


def _failure_text(output: bytes, returncode: int | None, raw: Path) -> str:
    """py-spy's own words (its `py-spy>` progress lines dropped), e.g. a ptrace refusal."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()
             if line.strip() and not line.startswith("py-spy>")]
    return " ".join(lines)[:500] or f"py-spy exited with code {returncode} and wrote no {raw}"


@dataclass
class Recording:
    """One py-spy process sampling one pid into a raw file. Failures become `error` (the bench must
    not fail because a profile could not be taken: no py-spy, ptrace not permitted, ...)."""

    pid: int
    output: Path
    duration_s: int
    flags: tuple[str, ...]
    command: list[str] = field(default_factory=list)
    error: str | None = None
    recorded_s: float = 0.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _started_at: float = field(default=0.0, init=False, repr=False)

    def start(self) -> None:
        executable = find_py_spy()
        if executable is None:
            self.error = (f"py-spy not found beside {sys.executable} nor on PATH "
                          "(pip install 'py-spy>=0.4', in the dev extra)")
            return
        self.command = [executable, "record", "--pid", str(self.pid), "--duration",
                        str(self.duration_s), "--rate", str(RATE_HZ), "--format", "raw",
                        "--nonblocking", *self.flags, "--output", str(self.output)]
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.unlink(missing_ok=True)  # a previous run's file must not pass for this one
        self._started_at = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "RUST_BACKTRACE": "0"})
        except OSError as error:
            self.error = f"py-spy could not be started: {error}"

    def stop(self) -> None:
        """End the recording with the part's window: py-spy writes what it has on SIGINT (Ctrl-C)."""
        process = self._process
        if process is None:
            self.error = self.error or "the part's window ended before py-spy was started"
            return
        self.recorded_s = min(float(self.duration_s), time.monotonic() - self._started_at)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if process.returncode != 0 or not self.output.exists():
            self.error = _failure_text(output, process.returncode, self.output)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "flags": list(self.flags), "rate_hz": RATE_HZ,
                "duration_s": self.duration_s, "recorded_s": round(self.recorded_s, 1),
                "raw": str(self.output), "command": self.command}


class Profiler:
    """The --profile recordings of one run, by part. Made without an out dir (no --profile),
    `record` does nothing, so the parts call it unconditionally and start no py-spy."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.profiles: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def record(self, part: str, role: str, pid: int, duration_s: float, *,
               views: Mapping[str, str | None], delay_s: float = 0.0, threads: bool = False,
               idle: bool = False, subprocesses: bool = False) -> Iterator[None]:
        """Sample `pid` from `delay_s` into the block for `duration_s` (at most MAX_DURATION_S, and
        not past the block), then summarise the raw file once per view: title -> the substring a
        thread's name must contain (None: every stack)."""
        if self.out_dir is None:
            yield
            return
        recording = Recording(pid, self.out_dir / f"profile-{part}.raw",
                              max(1, round(min(duration_s, MAX_DURATION_S))),
                              py_spy_flags(threads=threads, idle=idle, subprocesses=subprocesses))
        timer = threading.Timer(delay_s, recording.start)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()
            recording.stop()
            self.profiles[part] = {"role": role, **recording.to_json(), **(
                {"error": recording.error} if recording.error else
                {"views": summarise_views(recording.output.read_text(), views)})}


# --- summaries -----------------------------------------------------------------------------------

def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """(frames root first, samples) per line of py-spy's raw output."""
    stacks = []
    for line in text.splitlines():
        if line.strip():
            frames, count = line.rsplit(" ", 1)
            stacks.append((frames.split(";"), int(count)))
    return stacks


def function_of(frame: str) -> tuple[str, str]:
    """(function, file without the line): one function is one row however many lines sampled."""
    name, _, location = frame.rpartition(" (")
    if not name:
        return frame, ""
    path, _, line = location.rstrip(")").rpartition(":")
    return (name, path) if line.isdigit() else (name, location.rstrip(")"))


def _threads(frames: list[str]) -> dict[str, str]:
    """Thread id -> its frame (`thread (TID): NAME`), for the threads a stack names."""
    return {match.group(1): frame for frame in frames if (match := _THREAD_FRAME.match(frame))}


def _functions(frames: list[str]) -> list[tuple[str, str]]:
    return [function_of(frame) for frame in frames
            if not _THREAD_FRAME.match(frame) and not _PROCESS_FRAME.match(frame)]


def _table(counts: Counter[tuple[str, str]], total: int, top: int) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"function": name, "file": path, "samples": samples,
             "share": round(samples / total, 4)} for (name, path), samples in ranked]


def summarise(text: str, thread: str | None = None, top: int = TOP_INCLUSIVE,
              top_self: int = TOP_SELF) -> dict[str, Any]:
    """Share of samples per function: inclusive (on the stack at all, counted once per stack even
    when recursive: the time a call would save if it cost nothing) and self (the leaf: where the
    thread actually was). `thread` keeps only stacks of threads whose name contains it."""
    inclusive: Counter[tuple[str, str]] = Counter()
    leaf: Counter[tuple[str, str]] = Counter()
    threads: set[str] = set()
    processes: set[str] = set()
    total = 0
    for frames, count in parse_raw(text):
        named = _threads(frames)
        if thread is not None and not any(thread in name for name in named.values()):
            continue
        total += count
        threads.update(named)
        processes.update(frame for frame in frames if _PROCESS_FRAME.match(frame))
        functions = _functions(frames)
        inclusive.update(dict.fromkeys(functions, count))  # once per stack, even if recursive
        if functions:
            leaf[functions[-1]] += count
    return {"thread_filter": thread, "samples": total, "threads": len(threads),
            "processes": len(processes), "inclusive": _table(inclusive, total, top),
            "self": _table(leaf, total, top_self)}


def summarise_views(text: str, views: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    return {title: summarise(text, thread) for title, thread in views.items()}


# --- PROFILE.md ----------------------------------------------------------------------------------

def _rows(entries: list[dict[str, Any]]) -> list[str]:
    return ["| share | samples | function | file |", "| ---: | ---: | --- | --- |"] + [
        f"| {entry['share']:.1%} | {entry['samples']:,} | `{entry['function']}` | "
        f"`{entry['file']}` |" for entry in entries]


def _view_lines(title: str, view: Mapping[str, Any]) -> list[str]:
    seen = [f"{view['samples']:,} samples"]
    seen += [f"{key}: {view[key]}" for key in ("threads", "processes") if view[key]]
    return ["", f"### {title}", "", ", ".join(seen) + ".", "",
            f"Inclusive (on the stack), top {TOP_INCLUSIVE}:", "", *_rows(view["inclusive"]),
            "", f"Self (the leaf frame), top {TOP_SELF}:", "", *_rows(view["self"])]


def _part_lines(part: str, profile: Mapping[str, Any], mode: str) -> list[str]:
    flags = " ".join(profile["flags"]) or "no extra flags"
    lines = ["", f"## {part}: {profile['role']}", "",
             f"- Recorded: pid {profile['pid']}, py-spy at {profile['rate_hz']} Hz with {flags}, "
             f"{profile['duration_s']} s asked, about {profile['recorded_s']} s until the part's "
             f"window ended; raw file `{Path(profile['raw']).name}` beside this file.",
             f"- Reproduce: `herald bench{' --quick' if mode == 'quick' else ''} --profile "
             f"--parts {part}`" + (f" (py-spy ran as `py-spy {' '.join(profile['command'][1:])}`)."
                                   if profile["command"] else ".")]
    if "error" in profile:
        return lines + ["", f"No profile: {profile['error']}"]
    for title, view in profile["views"].items():
        lines += _view_lines(title, view)
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    meta = results.get("meta", {})
    mode = meta.get("mode", "full")
    lines = ["# Herald benchmark profiles", "",
             f"py-spy samples of the processes the bench measures, taken during the part's own "
             f"window by `herald bench --profile` ({meta.get('date', 'n/a')}, mode **{mode}**, "
             f"{meta.get('cpu_count', 'n/a')} cores); py-spy's own CPU shares the machine, so this "
             "run's figures are a little below an unprofiled run's. How to read the tables: "
             "bench/README.md."]
    for part, profile in results.get("profiles", {}).items():
        lines += _part_lines(part, profile, mode)
    return "\n".join(lines) + "\n"
