"""Start, probe and stop the local stack's processes.

Every process is started in its own session (its own process group), so `stop_group` ends the
emulator's JVM children too while touching nothing the stack did not start.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import psutil
import requests

CLOUD_SDK = Path(os.environ.get("CLOUDSDK_ROOT_DIR", "/usr/lib/google-cloud-sdk"))
PUBSUB_EMULATOR = CLOUD_SDK / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
FIRESTORE_EMULATOR = CLOUD_SDK / "platform/cloud-firestore-emulator/cloud_firestore_emulator"


class StackError(RuntimeError):
    """The local stack cannot start; the message says what to install or free."""


LISTEN_PORTS = range(20000, 32768)
"""Below Linux's ephemeral range (32768-60999), from which bind(0) and every outgoing connection
take ports: a port found free there was once taken by a client connection in the seconds before
the service bound it (bqemulator failed with "Address already in use")."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the machine is shared: never assume 8085),
    outside the range outgoing connections draw from."""
    for port in random.sample(LISTEN_PORTS, 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError("no free port in 20000-32767 on 127.0.0.1")


def require_cloud_sdk_emulators() -> None:
    """The emulators come from the Cloud SDK, not from PyPI: fail early with the fix."""
    missing = [path for path in (PUBSUB_EMULATOR, FIRESTORE_EMULATOR) if not path.exists()]
    if missing:
        raise StackError(
            "Google's emulators are missing (" + ", ".join(map(str, missing)) + "). Install them with "
            "`gcloud components install pubsub-emulator cloud-firestore-emulator` (or the Debian "
            "packages google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator), "
            "and Java 17+.")


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to start it and how to know it is ready."""

    name: str
    command: Sequence[str]
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    timeout_s: float = 60.0


def tcp_ready(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0
    return probe


def http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return False
    return probe


def log_contains(path: Path, marker: str) -> Callable[[], bool]:
    """Ready once a process has logged `marker` (for processes with no port, like the pipeline)."""
    def probe() -> bool:
        return path.exists() and marker in path.read_text(errors="replace")
    return probe


def start(service: Service, log_dir: Path) -> subprocess.Popen:
    """Start a service in its own process group, logging to `log_dir/<name>.log`, and wait until
    it answers; on failure the log's tail is in the error. It runs in `log_dir`, so what it
    writes beside itself stays with the stack's state (the BigQuery emulator's DuckDB spills
    gigabytes of temporary files into `.tmp/` of its working directory under a large insert
    load)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{service.name}.log"
    env = {**os.environ, **(service.env or {})}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(list(service.command), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=log_dir,
                                   start_new_session=True)
    deadline = time.monotonic() + service.timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if service.ready():
            return process
        time.sleep(0.2)
    stop_group(process.pid)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise StackError(f"{service.name} did not become ready (log {log_path}):\n{tail}")


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def stop_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started (its leader's pid is its id), then SIGKILL what is left.

    Waits on the live members rather than the leader, because the emulators' launcher scripts
    fork a JVM that outlives a killed script, and zombies count as gone (PID 1 on some machines
    never reaps orphans).
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _signal_and_wait(pgid, sig, grace_s):
            return


def _signal_and_wait(pgid: int, sig: signal.Signals, wait_s: float) -> bool:
    """True once the group has no live member (or never existed)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.1)
    return False


def python_module(module: str, *args: str) -> list[str]:
    """Command line running a module with this interpreter, so the stack uses the venv it runs in."""
    return [sys.executable, "-m", module, *args]
