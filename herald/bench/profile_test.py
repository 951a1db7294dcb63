import subprocess
import sys
from pathlib import Path

import pytest

from herald.bench.profile import (EXECUTOR_THREAD, Profiler, find_py_spy, function_of,
                                  render_markdown, summarise)

RAW = """\
thread (1): Thread: 0, ExecutorServiceWorker-0 (executing);run (beam/executor.py:10);walk (app/tree.py:5);walk (app/tree.py:7);leaf (app/tree.py:9) 6
thread (1): Thread: 0, ExecutorServiceWorker-0 (idle);run (beam/executor.py:10);wait (threading.py:320) 4
thread (2): ThreadPoolExecutor-1_0;_worker (concurrent/futures/thread.py:81);wait (threading.py:324) 10

"""


def _shares(rows: list[dict]) -> list[tuple[str, int, float]]:
    return [(row["function"], row["samples"], row["share"]) for row in rows]


def test_thread_filter_keeps_only_that_threads_stacks() -> None:
    view = summarise(RAW, EXECUTOR_THREAD)
    assert (view["samples"], view["threads"], view["processes"]) == (10, 1, 0)
    # Recursion (walk twice on one stack) counts once; ties are ordered by name.
    assert _shares(view["inclusive"]) == [("run", 10, 1.0), ("leaf", 6, 0.6), ("walk", 6, 0.6),
                                          ("wait", 4, 0.4)]
    assert _shares(view["self"]) == [("leaf", 6, 0.6), ("wait", 4, 0.4)]
    assert view["inclusive"][2]["file"] == "app/tree.py"


def test_all_threads_merge_lines_of_one_function() -> None:
    view = summarise(RAW)
    assert (view["samples"], view["threads"]) == (20, 2)
    assert _shares(view["inclusive"]) == [("wait", 14, 0.7), ("_worker", 10, 0.5),
                                          ("run", 10, 0.5), ("leaf", 6, 0.3), ("walk", 6, 0.3)]
    assert _shares(view["self"]) == [("wait", 14, 0.7), ("leaf", 6, 0.3)]


def test_top_limits_and_unknown_thread() -> None:
    view = summarise(RAW, top=1, top_self=1)
    assert _shares(view["inclusive"]) == [("wait", 14, 0.7)]
    assert _shares(view["self"]) == [("wait", 14, 0.7)]
    assert summarise(RAW, "no-such-thread") == {
        "thread_filter": "no-such-thread", "samples": 0, "threads": 0, "processes": 0,
        "inclusive": [], "self": []}


def test_process_frames_are_counted_not_summarised() -> None:
    raw = ('process 7:"python app.py";thread (3): MainThread;main (app.py:1) 2\n'
           'process 7:"python app.py";process 8:"python app.py";main (app.py:1) 3\n')
    view = summarise(raw)
    assert (view["samples"], view["threads"], view["processes"]) == (5, 1, 2)
    assert _shares(view["inclusive"]) == [("main", 5, 1.0)]


def test_function_of_drops_the_line_only() -> None:
    assert function_of("Signature.__init__.<locals>.<genexpr> (inspect.py:3019)") == (
        "Signature.__init__.<locals>.<genexpr>", "inspect.py")
    assert function_of("f (pkg/mod.py)") == ("f", "pkg/mod.py")
    assert function_of("<native>") == ("<native>", "")


def test_disabled_profiler_records_nothing(tmp_path: Path) -> None:
    profiler = Profiler(None)
    with profiler.record("ingest", "role", 1, 5, views={"all": None}):
        pass
    assert profiler.profiles == {}
    assert list(tmp_path.iterdir()) == []


def test_missing_py_spy_is_an_error_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_py_spy() is None
    profiler = Profiler(tmp_path)
    with profiler.record("backlog", "the pipeline", 1, 60, views={"all": None}, threads=True,
                         idle=True):
        pass
    entry = profiler.profiles["backlog"]
    assert "py-spy not found" in entry["error"]
    assert "views" not in entry
    assert (entry["flags"], entry["duration_s"]) == (["--threads", "--idle"], 15)
    assert "No profile: py-spy not found" in render_markdown(
        {"meta": {"mode": "quick"}, "profiles": profiler.profiles})


@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
def test_py_spy_failure_is_an_error_entry(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    profiler = Profiler(tmp_path)
    with profiler.record("ingest", "a process that has exited", gone.pid, 2,
                         views={"all": None}):
        pass
    entry = profiler.profiles["ingest"]
    assert entry["error"] and "Stack backtrace" not in entry["error"]
    assert "views" not in entry
