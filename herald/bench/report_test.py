from herald.bench.bulk import bulk_bodies, requests_per_thousand
from herald.contracts import parse_request
from herald.bench.report import GIB, evaluate, render_markdown, write


def _results() -> dict:
    timeline = [{"t_s": float(t), "offered": t * 10, "sent": t * 10, "accepted": t * 10,
                 "delivered": t * 9, "backlog": t} for t in range(0, 13)]
    phase = {"offered_rate": 1000.0, "duration_s": 12, "observed_s": 12.0, "accepted_rate": 990.0,
             "delivered_rate": 40.0, "sustained": False, "backlog_growth_per_s": 950.0,
             "backlog_end_of_load": 11_000, "warmup_s": 2.0,
             "latency_delivery": {"count": 10, "censored": 5, "p50_s": "inf", "p95_s": "inf",
                                  "p99_s": "inf"},
             "latency_ingest_202": {"p50_s": 0.004, "p99_s": 0.02},
             "pipeline_cpu_cores": 0.9, "generator_cpu_cores": 0.1, "timeline": timeline}
    return {
        "meta": {"date": "2026-11-01 10:00 UTC", "mode": "full", "cpu_count": 2,
                 "background_busy_cores": 0.5},
        "config": {"rates": [185.0, 1000.0]},
        "errors": [],
        "ingest": {"connections": 32, "warmup_s": 5, "duration_s": 30,
                   "server_settings": {"WORKERS": 1, "THREADS": 8},
                   "ingest_server": {"server": "gunicorn"},
                   "ingest": {"requests_per_s": 2100.0, "p50_ms": 10.0, "p99_ms": 45.0,
                              "statuses": {"202": 10}, "errors": {}, "cpu_cores": {"function": 1.0},
                              "generator_cpu_cores": 0.1, "machine_busy_cores": 1.9},
                   "trivial": {"requests_per_s": 5000.0, "p50_ms": 3.0, "p99_ms": 9.0,
                               "statuses": {"202": 10}, "errors": {}, "cpu_cores": {"function": 1.0},
                               "generator_cpu_cores": 0.2, "machine_busy_cores": 1.5},
                   "ratio_to_trivial": 0.42},
        "pipeline": {"rate_185": {"offered_rate": 185.0, "error": "no warm-up"},
                     "rate_1000": phase},
        "pipeline_backlog": {"requests": 3000, "completed": 900, "rate_per_s": 45.0,
                             "reading_s": 20.0},
        "bare_read": {"messages": 20000, "count": 20000, "rate_per_s": 1100.0, "reading_s": 18.0},
        "bulk": {"accepted": 1000, "recipients_delivered": 1000, "sendgrid_requests": 1,
                 "requests_per_1000_recipients": 1.0, "floor_per_1000_recipients": 1.0},
        "memory_peak_bytes": {"ingest_function": 100 << 20, "pipeline_r1000": 3 * GIB,
                              "pipeline_bulk": 1 << 30},
    }


def test_evaluate_gives_every_bar_a_verdict() -> None:
    verdicts = {v["bar"]: v["verdict"] for v in evaluate(_results())}
    assert verdicts == {
        "ingest_rate": "PASS", "ingest_p99": "PASS", "ingest_vs_trivial": "FAIL",
        "pipeline_185_p99": "NOT MEASURED", "pipeline_1000_sustained": "FAIL",
        "pipeline_1000_p99": "FAIL", "pipeline_vs_bare": "FAIL", "bulk_email": "PASS",
        "pipeline_rss": "FAIL", "priority_high_p99": "NOT MEASURED",
        "scheduled_lateness": "NOT MEASURED"}


def test_priority_bars_judge_the_urgent_p99_and_scheduled_lateness() -> None:
    results = {"priority": {"urgent_latency": {"p99_s": 0.42},
                            "scheduled_lateness": {"p50_s": 2.1, "p99_s": 3.5},
                            "scheduled_early": 0}}
    verdicts = {v["bar"]: (v["verdict"], v["value"]) for v in evaluate(results)}
    assert verdicts["priority_high_p99"] == ("PASS", "0.420 s")
    assert verdicts["scheduled_lateness"] == ("PASS", "2.100 s / 3.500 s, 0 early")
    results["priority"].update(urgent_latency={"p99_s": "inf"}, scheduled_early=1)
    verdicts = {v["bar"]: v["verdict"] for v in evaluate(results)}
    assert (verdicts["priority_high_p99"], verdicts["scheduled_lateness"]) == ("FAIL", "FAIL")


def test_pipeline_share_falls_back_to_the_loaded_rate_without_a_backlog_run() -> None:
    results = _results()
    del results["pipeline_backlog"]
    share = next(v for v in evaluate(results) if v["bar"] == "pipeline_vs_bare")
    assert share["value"].startswith("0.036x")


def test_evaluate_on_empty_results_measures_nothing() -> None:
    assert {v["verdict"] for v in evaluate({})} == {"NOT MEASURED"}


def test_incomplete_bulk_is_not_measured() -> None:
    results = _results()
    results["bulk"]["incomplete"] = "500 of 1000"
    bulk = next(v for v in evaluate(results) if v["bar"] == "bulk_email")
    assert bulk["verdict"] == "NOT MEASURED"


def test_markdown_has_machine_bars_and_sections() -> None:
    text = render_markdown(_results())
    assert "2 cores" in text and "2026-11-01" in text and "**Warning:**" in text
    assert "| Ingest accepted requests/s | >= 2,000 | 2,100/s | **PASS** |" in text
    assert "> window" in text
    assert "### Backlog over time at 1,000/s" in text
    assert "error: no warm-up" in text
    assert "## Bulk email" in text and "## Peak RSS" in text
    assert render_markdown({}).startswith("# Herald benchmark results")


def test_profiles_get_their_own_file_and_one_line_in_results(tmp_path) -> None:
    results = _results()
    assert "PROFILE" not in render_markdown(results)
    assert [path.name for path in write(results, tmp_path)] == ["results.json", "RESULTS.md"]
    results["meta"]["mode"] = "quick"
    results["profiles"] = {"backlog": {
        "role": "the pipeline", "pid": 42, "flags": ["--threads", "--idle"], "rate_hz": 100,
        "duration_s": 15, "recorded_s": 9.5, "raw": str(tmp_path / "profile-backlog.raw"),
        "command": ["/venv/bin/py-spy", "record", "--pid", "42"], "views": {"Executor": {
            "thread_filter": "ExecutorServiceWorker", "samples": 950, "threads": 1,
            "processes": 0, "self": [],
            "inclusive": [{"function": "f.<locals>.g", "file": "a/b.py", "samples": 475,
                           "share": 0.5}]}}}}
    paths = write(results, tmp_path)
    assert [path.name for path in paths] == ["results-quick.json", "RESULTS-quick.md",
                                             "PROFILE-quick.md"]
    assert "profiles of this run (where the time goes): bench/PROFILE-quick.md" in \
        paths[1].read_text()
    profile = paths[2].read_text()
    assert "`herald bench --quick --profile --parts backlog`" in profile
    assert "`py-spy record --pid 42`" in profile and "`profile-backlog.raw`" in profile
    assert "### Executor\n\n950 samples, threads: 1." in profile
    assert "| 50.0% | 475 | `f.<locals>.g` | `a/b.py` |" in profile


def test_requests_per_thousand_counts_distinct_request_indexes() -> None:
    entries = [{"recipient": f"u{i}@x", "request_index": i // 500} for i in range(1000)]
    out = requests_per_thousand(entries)
    assert out["sendgrid_requests"] == 2 and out["requests_per_1000_recipients"] == 2.0
    assert out["floor_per_1000_recipients"] == 1.0
    assert requests_per_thousand([])["requests_per_1000_recipients"] is None


def test_a_bulk_is_one_request_per_page_of_distinct_email_takers() -> None:
    bodies = bulk_bodies("bulk-1", 2500, 6000)
    assert [body["notificationId"] for body in bodies] == ["bulk-1-0", "bulk-1-1", "bulk-1-2"]
    assert [len(body["userIds"]) for body in bodies] == [1000, 1000, 500]
    assert len({user for body in bodies for user in body["userIds"]}) == 2500
    assert all(body["notificationType"] == "email" for body in bodies)
    assert all(parse_request(body).audience == tuple(body["userIds"]) for body in bodies)
