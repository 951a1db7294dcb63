"""stop_group ends exactly the groups the stack started, children included, and nothing else."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from herald.local import processes
from herald.local.processes import Service, StackError

SCRIPT_WITH_CHILD = ("import subprocess, sys, time; "
                     "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                     "print('ready', flush=True); time.sleep(60)")


def test_stop_group_ends_the_child_a_launcher_forked_and_spares_others(tmp_path) -> None:
    log = tmp_path / "logs"
    started = processes.start(Service("launcher", [sys.executable, "-c", SCRIPT_WITH_CHILD],
                                      processes.log_contains(log / "launcher.log", "ready")), log)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        members = processes.group_members(started.pid)
        assert len(members) == 2
        processes.stop_group(started.pid)
        assert processes.group_members(started.pid) == []
        assert bystander.poll() is None and psutil.pid_exists(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_service_that_never_gets_ready_fails_with_its_log(tmp_path) -> None:
    service = Service("crasher", [sys.executable, "-c", "print('boom: missing thing'); exit(3)"],
                      lambda: False, timeout_s=5)
    with pytest.raises(StackError, match="boom: missing thing"):
        processes.start(service, tmp_path)
