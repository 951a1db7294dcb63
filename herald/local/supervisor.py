"""Restart a local pipeline process that dies, as a managed runner (Dataflow) restarts a worker.

    python -m herald.local.supervisor --name pipeline --stack-log .herald/logs/stack.log \\
        -- python -m pipelines.herald_pipeline --streaming ...

`herald local up` starts each streaming pipeline this way (`supervised`). The supervisor leads the
process group the stack records and runs the command as its child, in that group. When the child
exits while nobody is stopping the group (a crash, an OOM kill, a SIGKILL), the supervisor starts
it again after a backoff (`BACKOFF_S`, doubling up to `MAX_BACKOFF_S`; back to the start once a
child has run `STABLE_S`) and says so in one line, naming the process, its exit code and the
restart's number, in the stack log and in the process's own log (the supervisor's stdout):

    supervisor: pipeline (pid 4242) exited with code -9 (SIGKILL); restart 1 in 1 s

`herald local down` stops the group: its SIGTERM reaches the child and the supervisor alike, and
a supervisor that is stopping restarts nothing, so `down` ends exactly what `up` started,
restarted processes included. Work a killed DirectRunner had read from Pub/Sub is not redone by
the restart (the DirectRunner acknowledges on read); `herald reconcile` recovers it.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from herald.local import processes
from herald.local.processes import Service

BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
"""A child that ran this long before dying restarts after `BACKOFF_S` again."""


def supervised(service: Service, stack_log: Path) -> Service:
    """`service` run under a supervisor (same name, readiness and environment)."""
    return dataclasses.replace(service, command=processes.python_module(
        "herald.local.supervisor", "--name", service.name, "--stack-log", str(stack_log), "--",
        *service.command))


def describe_exit(code: int) -> str:
    """`code -9 (SIGKILL)` for a signal (Popen's negative return code), else `code 3`."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


class Supervisor:
    """Runs `command` as `name` until stopped, restarting it whenever it exits."""

    def __init__(self, name: str, command: Sequence[str], stack_log: Path) -> None:
        self._name = name
        self._command = list(command)
        self._stack_log = stack_log
        self._stopping = threading.Event()
        self._child: subprocess.Popen | None = None
        self.restarts = 0

    def say(self, line: str) -> None:
        """One line in the process's log (stdout) and in the stack log."""
        stamped = f"{datetime.now(timezone.utc).isoformat(timespec='milliseconds')} supervisor: {line}"
        print(stamped, flush=True)
        self._stack_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self._stack_log, "a") as log:
            log.write(stamped + "\n")

    def stop(self, *_: object) -> None:
        """Stop restarting and end the child (a signal handler: SIGTERM, SIGINT)."""
        self._stopping.set()
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()

    def run(self) -> int:
        """Until stopped; returns the last child's exit code."""
        backoff = BACKOFF_S
        while True:
            started = time.monotonic()
            self._child = subprocess.Popen(self._command)
            if self.restarts:
                self.say(f"{self._name} restarted (pid {self._child.pid}, restart {self.restarts})")
            code = self._child.wait()
            if self._stopping.is_set():
                return code
            if time.monotonic() - started >= STABLE_S:
                backoff = BACKOFF_S
            self.restarts += 1
            self.say(f"{self._name} (pid {self._child.pid}) exited with {describe_exit(code)}; "
                     f"restart {self.restarts} in {backoff:g} s")
            if self._stopping.wait(backoff):
                return code
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the process's name in the stack")
    parser.add_argument("--stack-log", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise")
    supervisor = Supervisor(args.name, command, args.stack_log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, supervisor.stop)
    sys.exit(supervisor.run())


if __name__ == "__main__":
    main()
