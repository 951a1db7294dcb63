from herald.bench.bulk import bulk_bodies, requests_per_thousand
from herald.contracts import parse_request
from herald.bench.report import GIB, evaluate, render_markdown, write


def _results() -> dict:
    timeline = [{"t_s": float(t), "offered": t * 10, "sent": t * 10, "accepted": t * 10,
                 "delivered": t * 9, "backlog": t} for t in range(0, 13)]
    phase = {"offered_rate": 185.0, "duration_s": 12, "observed_s": 12.0, "accepted_rate": 184.0,
             "delivered_rate": 80.0, "sustained": False, "backlog_growth_per_s": 95.0,
             "backlog_end_of_load": 1_100, "warmup_s": 2.0,
             "latency_delivery": {"count": 10, "censored": 5, "p50_s": "inf", "p95_s": "inf",
                                  "p99_s": "inf"},
             "latency_ingest_202": {"p50_s": 0.004, "p99_s": 0.02},
             "pipeline_cpu_cores": 0.9, "generator_cpu_cores": 0.1, "timeline": timeline}
    drain = {"requests": 1000, "completed": 1000, "rate_per_s": 120.0, "reading_s": 8.3,
             "workers": 1, "cpu_seconds": 9.0, "pipeline_cpu_cores": 1.1}
    return {
        "meta": {"date": "2026-11-01 10:00 UTC", "mode": "full", "cpu_count": 2,
                 "background_busy_cores": 0.5},
        "config": {"rates": [50.0, 185.0]},
        "errors": [],
        "ingest": {"connections": 32, "warmup_s": 5, "duration_s": 30,
                   "server_settings": {"WORKERS": 1, "THREADS": 8},
                   "ingest_server": {"server": "gunicorn"},
                   "ingest": {"requests_per_s": 700.0, "p50_ms": 40.0, "p99_ms": 95.0,
                              "statuses": {"202": 10}, "errors": {}, "cpu_cores": {"function": 1.0},
                              "generator_cpu_cores": 0.1, "machine_busy_cores": 1.9},
                   "peer": {"requests_per_s": 1250.0, "p50_ms": 20.0, "p99_ms": 40.0,
                            "statuses": {"202": 10}, "errors": {}, "cpu_cores": {"function": 1.0},
                            "generator_cpu_cores": 0.2, "machine_busy_cores": 1.5},
                   "ratio_to_peer": 0.56},
        "pipeline": {"rate_50": {"offered_rate": 50.0, "error": "no warm-up"},
                     "rate_185": phase},
        "backlog": {"herald": {**drain, "kind": "herald"},
                    "peer": {**drain, "kind": "peer", "rate_per_s": 100.0}, "ratio": 1.2},
        "growth": {"small": {**drain, "kind": "herald"},
                   "large": {**drain, "requests": 4000, "rate_per_s": 114.0}},
        "faults": {"herald": {"requests": 200, "deliveries_expected": 300,
                              "deliveries_reached": 300, "lost": 0, "duplicates": 0,
                              "loss_rate": 0.0, "duplicate_rate": 0.0},
                   "peer": {"requests": 200, "deliveries_expected": 300,
                            "deliveries_reached": 240, "lost": 60, "duplicates": 1,
                            "loss_rate": 0.2, "duplicate_rate": 0.0033}},
        "cost": {"design": {"per_day": 16_000_000, "average_per_s": 185.2, "peak_per_s": 926},
                 "herald": {"per_request": {"firestore_reads": 2.5}, "total": 2.4,
                            "lines": {"Firestore": 1.2, "Dataflow workers": 1.2},
                            "sizing": {"workers": 1, "machine": "n2-standard-2"}},
                 "peer": {"per_request": {"firestore_reads": 2.0}, "total": 1.1,
                          "lines": {"Firestore": 0.6, "Cloud Run worker (always on)": 0.5},
                          "sizing": {"vcpus": 2}},
                 "herald_peak": {"peak_per_s": 926, "workers": 3, "machine": "n2-standard-2",
                                 "usd_per_month_at_peak_size": 355.75}},
        "bulk": {"accepted": 1000, "recipients_delivered": 1000, "sendgrid_requests": 1,
                 "requests_per_1000_recipients": 1.0, "floor_per_1000_recipients": 1.0},
        "memory_peak_bytes": {"ingest_function": 100 << 20, "pipeline_r185": 3 * GIB,
                              "pipeline_bulk": 1 << 30},
    }


def test_evaluate_gives_every_bar_a_verdict() -> None:
    verdicts = {v["bar"]: v["verdict"] for v in evaluate(_results())}
    assert verdicts == {
        "ingest_vs_peer": "FAIL", "ingest_p99": "PASS", "drain_vs_peer": "PASS",
        "pipeline_185_sustained": "FAIL", "pipeline_185_p99": "FAIL",
        "pipeline_50_p99": "NOT MEASURED", "growth": "PASS", "cost": "PASS", "faults": "PASS",
        "bulk_email": "PASS", "pipeline_rss": "FAIL", "priority_high_p99": "NOT MEASURED",
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


def test_peer_comparisons_show_both_sides() -> None:
    verdicts = {v["bar"]: v["value"] for v in evaluate(_results())}
    assert verdicts["drain_vs_peer"] == "1.20x (Herald 120.0/s, peer 100.0/s)"
    assert verdicts["growth"] == "0.95x (114.0/s with 4,000 queued, 120.0/s with 1,000)"
    assert verdicts["cost"] == "Herald $2.40 (peer $1.10)"
    assert verdicts["faults"] == ("Herald 0 lost, 0 twice of 300; peer 60 lost, 1 twice of 300")


def test_a_herald_loss_or_too_many_duplicates_under_faults_fails() -> None:
    results = _results()
    results["faults"]["herald"].update(lost=1)
    assert next(v for v in evaluate(results) if v["bar"] == "faults")["verdict"] == "FAIL"
    results["faults"]["herald"].update(lost=0, duplicates=1)
    assert next(v for v in evaluate(results) if v["bar"] == "faults")["verdict"] == "FAIL"


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
    assert "| Ingest p99 latency, 32 connections | < 100 ms | 95.0 ms | **PASS** |" in text
    assert "> window" in text
    assert "### Backlog over time at 185/s" in text
    assert "error: no warm-up" in text
    assert "| peer function (validate, publish) | 1,250 |" in text
    assert "| Herald pipeline | 1 | 1,000 | 1,000 | **120.0/s** |" in text
    assert "| 4,000 queued | 1 | 4,000 |" in text
    assert "| peer worker | 200 | 300 | 240 | 60 (0.2000) | 1 (0.0033) |" in text
    assert "| **total** | **$2.40** | **$1.10** |" in text
    assert "| Cloud Run worker (always on) | - | 0.500 |" in text
    assert "3 n2-standard-2 Dataflow worker(s)" in text
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
    assert all(parse_request(body).recipient_ids == tuple(body["userIds"]) for body in bodies)
