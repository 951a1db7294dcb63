"""The cost arithmetic and the one price table (bench/README.md carries `price_table()`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.bench import cost, opcount
from herald.bench.cost import DESIGN, PRICE, PerRequest, peak_sizing, usd_per_million, workers_for

README = Path(__file__).resolve().parents[2] / "bench" / "README.md"


def test_the_readme_price_table_is_the_codes() -> None:
    assert cost.price_table() in README.read_text()


def test_the_design_load() -> None:
    assert round(DESIGN.average_per_s, 1) == 185.2 and round(DESIGN.peak_per_s) == 926


def test_workers_cover_the_cpu_at_the_target_utilization_and_never_zero() -> None:
    assert workers_for(185.2, 0.0) == 1
    # 926/s x 5 ms = 4.63 vCPU; an n2-standard-2 gives 1.2 vCPU at 60%: 4 workers
    assert workers_for(926, 0.005) == 4
    assert peak_sizing(0.005)["workers"] == 4


def test_measured_ops_per_request_add_edge_and_delivery() -> None:
    edge = {opcount.FIRESTORE_WRITES: 200, opcount.PUBSUB_PUBLISHED: 100,
            opcount.PUBSUB_PUBLISH_BYTES: 60_000, opcount.PUBSUB_PUBLISH_BILLED: 100_000}
    delivery = {opcount.FIRESTORE_READS: 500, opcount.FIRESTORE_WRITES: 300,
                opcount.PUBSUB_ACKED: 50, opcount.BIGQUERY_BILLED: 50 * 3 * 1024}
    ops = PerRequest.measured(edge, 100, 1.0, delivery, 50, 2.5)
    assert (ops.firestore_reads, ops.firestore_writes) == (10.0, 8.0)
    assert ops.pubsub_publish_billed_bytes == 1000.0
    # 600-byte messages: each delivery bills the 1,000-byte minimum
    assert ops.pubsub_message_bytes == 600.0 and ops.pubsub_delivered_billed_bytes == 1000.0
    assert ops.bigquery_billed_bytes == 3 * 1024
    assert (ops.function_cpu_s, ops.worker_cpu_s) == (0.01, 0.05)


def test_dollars_per_million_by_line_item() -> None:
    ops = PerRequest(firestore_reads=3, firestore_writes=4, firestore_deletes=1,
                     pubsub_publish_billed_bytes=1000, pubsub_delivered_billed_bytes=1000,
                     bigquery_billed_bytes=4096, function_cpu_s=0.002, worker_cpu_s=0.004,
                     pubsub_message_bytes=800)
    herald = usd_per_million(ops, worker="dataflow")
    lines = herald["lines"]
    assert lines["Firestore"] == pytest.approx(3 * 0.3 + 4 * 0.9 + 0.1)
    assert lines["Pub/Sub"] == pytest.approx(2000e6 * 40 / 2**40, abs=1e-4)
    assert lines["BigQuery"] == pytest.approx(4096e6 * 0.05 / 2**30, abs=1e-4)
    assert lines["Cloud Run functions"] == pytest.approx(0.40 + 0.002e6 * (0.000024 + 0.5 * 0.0000025))
    # 185/s x 4 ms = 0.74 vCPU: one n2-standard-2 (2 x 0.069 + 8 x 0.003557 $/h) all day
    assert herald["sizing"] == {"workers": 1, "machine": "n2-standard-2"}
    assert lines["Dataflow workers"] == pytest.approx(
        1e6 * 24 * (2 * 0.069 + 8 * 0.003557) / 16e6, abs=1e-4)
    assert herald["total"] == pytest.approx(sum(lines.values()), abs=1e-3)
    peer = usd_per_million(ops, worker="cloud_run")
    assert peer["sizing"] == {"vcpus": 2}  # 0.74 vCPU at 60% -> 2
    assert "Dataflow workers" not in peer["lines"]
    with pytest.raises(ValueError):
        usd_per_million(ops, worker="gke")


def test_from_results_needs_both_windows_counted() -> None:
    assert set(cost.from_results({})) == {"design"}
    results = {
        "ingest": {"ingest": {"operations": {opcount.PUBSUB_PUBLISHED: 10,
                                             opcount.PUBSUB_PUBLISH_BYTES: 6000},
                              "function_cpu_seconds": 0.1}},
        "backlog": {"herald": {"operations": {opcount.PUBSUB_ACKED: 10,
                                              opcount.FIRESTORE_READS: 30},
                               "cpu_seconds": 0.5, "completed": 10}}}
    out = cost.from_results(results)
    assert out["herald"]["per_request"]["firestore_reads"] == 3.0
    assert out["herald_peak"]["workers"] >= 1 and "peer" not in out
    assert PRICE["pubsub_throughput"].each == 40 / 2**40
