"""The supervisor restarts a process that dies, says so in the stack log and the process's log,
and stops with its group, restarting nothing then."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from herald.local import processes
from herald.local.processes import Service
from herald.local.supervisor import supervised

# Counts its runs in a file; the first run exits with code 3, later ones stay up.
WORKER = ("import pathlib, sys, time; counter = pathlib.Path(sys.argv[1]); "
          "run = int(counter.read_text()) + 1 if counter.exists() else 1; "
          "counter.write_text(str(run)); print(f'run {run}', flush=True); "
          "sys.exit(3) if run == 1 else time.sleep(120)")


def test_a_dead_process_is_restarted_logged_and_down_stops_it_for_good(tmp_path: Path) -> None:
    logs, counter = tmp_path / "logs", tmp_path / "runs"
    stack_log = logs / "stack.log"

    def worker(ready_at_run: int) -> Service:
        return supervised(Service("worker", [sys.executable, "-c", WORKER, str(counter)],
                                  processes.log_contains(logs / "worker.log", f"run {ready_at_run}"),
                                  timeout_s=20), stack_log)

    group = processes.start(worker(2), logs).pid  # ready once restarted after its exit code 3
    lines = stack_log.read_text().splitlines()
    assert "supervisor: worker (pid" in lines[0]
    assert lines[0].endswith("exited with code 3; restart 1 in 1 s")
    assert "supervisor: worker restarted (pid" in lines[1] and lines[1].endswith("restart 1)")

    [child] = psutil.Process(group).children()
    child.kill()  # a crash
    ran_again, deadline = processes.log_contains(logs / "worker.log", "run 3"), time.monotonic() + 20
    while not ran_again():
        assert time.monotonic() < deadline, "not restarted after SIGKILL"
        time.sleep(0.1)
    assert "worker (pid" in stack_log.read_text()
    assert f"worker (pid {child.pid}) exited with code -9 (SIGKILL); restart 2 in 2 s" in \
        stack_log.read_text()
    assert "worker restarted" in (logs / "worker.log").read_text()  # in its own log too

    processes.stop_group(group)
    assert processes.group_members(group) == []
    assert counter.read_text() == "3"
    assert stack_log.read_text().count("exited with") == 2, "nothing restarted while stopping"
