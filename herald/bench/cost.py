"""What a GCP user pays Google per million notifications, from the operations the bench counted.

The one home of the list prices (PRICES, with their sources; bench/README.md's price table is
`price_table()`, checked by cost_test.py) and of the arithmetic: operations per request measured
in the bench (herald/bench/opcount.py counts Firestore, Pub/Sub and BigQuery calls in the
processes; memory.CpuWindow their CPU) -> dollars per day at the design's load -> dollars per
million notifications. Provider fees (FCM is free, Twilio and SendGrid bill per message) are left
out: they are the same whoever sends.

Pure: no Google clients, so the tests are fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from herald.bench import opcount

PRICES_CHECKED = "2026-11-25"
"""When the list prices below were read (USD, us-central1 or the US multi-region, no discounts)."""


@dataclass(frozen=True)
class Price:
    key: str
    service: str
    item: str
    usd: float
    per: float
    unit: str
    source: str

    @property
    def each(self) -> float:
        """Dollars for one `unit`."""
        return self.usd / self.per


TIB = float(1 << 40)
GIB = float(1 << 30)
PRICES: tuple[Price, ...] = (
    Price("firestore_read", "Firestore", "document reads", 0.03, 100_000, "document",
          "https://cloud.google.com/firestore/pricing"),
    Price("firestore_write", "Firestore", "document writes", 0.09, 100_000, "document",
          "https://cloud.google.com/firestore/pricing"),
    Price("firestore_delete", "Firestore", "document deletes", 0.01, 100_000, "document",
          "https://cloud.google.com/firestore/pricing"),
    Price("pubsub_throughput", "Pub/Sub", "throughput, publish and delivery (at least 1,000 "
          "bytes per request)", 40.0, TIB, "byte", "https://cloud.google.com/pubsub/pricing"),
    Price("bigquery_streaming_insert", "BigQuery", "streaming inserts, `insertAll` (at least "
          "1 KB per row)", 0.05, GIB, "byte", "https://cloud.google.com/bigquery/pricing"),
    Price("functions_request", "Cloud Run functions", "requests", 0.40, 1_000_000, "request",
          "https://cloud.google.com/run/pricing"),
    Price("functions_vcpu_second", "Cloud Run functions", "vCPU-seconds, CPU during requests "
          "only (tier 1)", 0.000024, 1, "vCPU-second", "https://cloud.google.com/run/pricing"),
    Price("functions_gib_second", "Cloud Run functions", "GiB-seconds, CPU during requests "
          "only (tier 1)", 0.0000025, 1, "GiB-second", "https://cloud.google.com/run/pricing"),
    Price("run_always_vcpu_second", "Cloud Run", "vCPU-seconds, CPU always allocated "
          "(the peer's worker)", 0.000018, 1, "vCPU-second", "https://cloud.google.com/run/pricing"),
    Price("run_always_gib_second", "Cloud Run", "GiB-seconds, CPU always allocated "
          "(the peer's worker)", 0.000002, 1, "GiB-second", "https://cloud.google.com/run/pricing"),
    Price("dataflow_streaming_vcpu_hour", "Dataflow", "streaming worker vCPU", 0.069, 1,
          "vCPU-hour", "https://cloud.google.com/dataflow/pricing"),
    Price("dataflow_streaming_gb_hour", "Dataflow", "streaming worker memory", 0.003557, 1,
          "GB-hour", "https://cloud.google.com/dataflow/pricing"),
    Price("dataflow_streaming_engine_gb", "Dataflow", "Streaming Engine data processed", 0.018,
          1, "GB", "https://cloud.google.com/dataflow/pricing"),
)
PRICE = {price.key: price for price in PRICES}


@dataclass(frozen=True)
class Design:
    """The design's load: 10M push, 1M SMS, 5M email a day; the peak is 5x the average."""

    per_day: int = 16_000_000
    peak_factor: float = 5.0

    @property
    def average_per_s(self) -> float:
        return self.per_day / 86_400

    @property
    def peak_per_s(self) -> float:
        return self.average_per_s * self.peak_factor


DESIGN = Design()


@dataclass(frozen=True)
class Machine:
    """A worker machine: Dataflow's streaming jobs (terraform's `dataflow_machine_type`)."""

    name: str
    vcpus: int
    memory_gb: float

    def dataflow_usd_per_hour(self) -> float:
        return (self.vcpus * PRICE["dataflow_streaming_vcpu_hour"].each
                + self.memory_gb * PRICE["dataflow_streaming_gb_hour"].each)


N2_STANDARD_2 = Machine("n2-standard-2", 2, 8.0)
TARGET_UTILIZATION = 0.6
"""The share of a worker's vCPUs the sizing plans to use: headroom for bursts and autoscaling lag."""
FUNCTION_GIB_PER_VCPU = 0.5
"""Memory billed per vCPU-second of the functions (512 MiB per vCPU, the deployed size)."""
WORKER_GIB_PER_VCPU = 0.5
"""Memory of the peer's always-on worker per vCPU."""
STREAMING_ENGINE_PASSES = 4
"""How many times a request's bytes go through Streaming Engine (the read, then the keyed steps:
recipients' batching, dedupe, the senders' GroupIntoBatches): an estimate, Streaming Engine's
data processed is not measurable off Dataflow."""


def workers_for(rate_per_s: float, cpu_s_per_request: float, machine: Machine = N2_STANDARD_2,
                utilization: float = TARGET_UTILIZATION) -> int:
    """Workers of `machine` that give `rate_per_s` requests the CPU they need at `utilization`;
    at least one (a streaming job never scales to zero)."""
    return max(1, math.ceil(rate_per_s * cpu_s_per_request / (machine.vcpus * utilization)))


@dataclass(frozen=True)
class PerRequest:
    """Operations per accepted request, measured: the edge's (`function_*`, while the ingest part
    ran it) plus the delivery side's (while the backlog part drained requests with it)."""

    firestore_reads: float
    firestore_writes: float
    firestore_deletes: float
    pubsub_publish_billed_bytes: float
    pubsub_delivered_billed_bytes: float
    bigquery_billed_bytes: float
    function_cpu_s: float
    worker_cpu_s: float
    pubsub_message_bytes: float = 0.0

    @classmethod
    def measured(cls, edge: Mapping[str, float], edge_requests: float, edge_cpu_s: float,
                 delivery: Mapping[str, float], delivery_requests: float,
                 delivery_cpu_s: float) -> PerRequest:
        """From the op counts (opcount keys) and CPU seconds of the two windows and the requests
        each handled. Delivery bytes: each message delivered (acknowledged) bills at least 1,000
        bytes, as if each arrived in a pull of its own (the worst case; a busy streaming pull
        carries several), sized like the messages the edge published."""
        per_edge = {key: value / edge_requests for key, value in edge.items()}
        per_delivery = {key: value / delivery_requests for key, value in delivery.items()}
        published = edge.get(opcount.PUBSUB_PUBLISHED) or 0
        message = (edge.get(opcount.PUBSUB_PUBLISH_BYTES, 0) / published) if published else 0.0
        acked = per_delivery.get(opcount.PUBSUB_ACKED, 0.0)
        both = lambda key: per_edge.get(key, 0.0) + per_delivery.get(key, 0.0)  # noqa: E731
        return cls(
            firestore_reads=both(opcount.FIRESTORE_READS),
            firestore_writes=both(opcount.FIRESTORE_WRITES),
            firestore_deletes=both(opcount.FIRESTORE_DELETES),
            pubsub_publish_billed_bytes=both(opcount.PUBSUB_PUBLISH_BILLED),
            pubsub_delivered_billed_bytes=acked * max(opcount.PUBSUB_MIN_REQUEST_BYTES, message),
            bigquery_billed_bytes=both(opcount.BIGQUERY_BILLED),
            function_cpu_s=edge_cpu_s / edge_requests,
            worker_cpu_s=delivery_cpu_s / delivery_requests,
            pubsub_message_bytes=message)


def usd_per_million(ops: PerRequest, *, worker: str, design: Design = DESIGN
                    ) -> dict[str, Any]:
    """Dollars per million requests at the design's average load, by line item, and the total.

    `worker` says what runs the delivery side: "dataflow" (Herald: streaming workers of
    N2_STANDARD_2 sized by `workers_for`, plus Streaming Engine) or "cloud_run" (the peer: an
    always-on container with the vCPUs the same sizing gives). Function instance time is priced
    as its CPU time (a fully busy instance), with FUNCTION_GIB_PER_VCPU of memory."""
    million = 1_000_000
    lines = {
        "Firestore": million * (ops.firestore_reads * PRICE["firestore_read"].each
                                + ops.firestore_writes * PRICE["firestore_write"].each
                                + ops.firestore_deletes * PRICE["firestore_delete"].each),
        "Pub/Sub": million * (ops.pubsub_publish_billed_bytes + ops.pubsub_delivered_billed_bytes)
        * PRICE["pubsub_throughput"].each,
        "BigQuery": million * ops.bigquery_billed_bytes * PRICE["bigquery_streaming_insert"].each,
        "Cloud Run functions": million * (
            PRICE["functions_request"].each
            + ops.function_cpu_s * (PRICE["functions_vcpu_second"].each
                                    + FUNCTION_GIB_PER_VCPU * PRICE["functions_gib_second"].each)),
    }
    per_day = design.per_day
    if worker == "dataflow":
        workers = workers_for(design.average_per_s, ops.worker_cpu_s)
        lines["Dataflow workers"] = million * 24 * workers * N2_STANDARD_2.dataflow_usd_per_hour() \
            / per_day
        lines["Dataflow Streaming Engine"] = million * STREAMING_ENGINE_PASSES \
            * ops.pubsub_message_bytes / 1e9 * PRICE["dataflow_streaming_engine_gb"].each
        sizing = {"workers": workers, "machine": N2_STANDARD_2.name}
    elif worker == "cloud_run":
        vcpus = max(1, math.ceil(design.average_per_s * ops.worker_cpu_s / TARGET_UTILIZATION))
        lines["Cloud Run worker (always on)"] = million * 86_400 * vcpus * (
            PRICE["run_always_vcpu_second"].each
            + WORKER_GIB_PER_VCPU * PRICE["run_always_gib_second"].each) / per_day
        sizing = {"vcpus": vcpus}
    else:
        raise ValueError(f"unknown worker {worker!r}: dataflow or cloud_run")
    lines = {name: round(value, 4) for name, value in lines.items()}
    return {"lines": lines, "total": round(sum(lines.values()), 3), "sizing": sizing,
            "per_day": per_day, "average_per_s": round(design.average_per_s, 1)}


def peak_sizing(cpu_s_per_request: float, design: Design = DESIGN,
                machine: Machine = N2_STANDARD_2) -> dict[str, Any]:
    """Dataflow at the design's peak: workers for the peak rate and what a month of them at that
    size would cost (the upper bound; autoscaling runs fewer off-peak)."""
    workers = workers_for(design.peak_per_s, cpu_s_per_request, machine)
    monthly = workers * machine.dataflow_usd_per_hour() * 24 * 30
    return {"peak_per_s": round(design.peak_per_s), "workers": workers, "machine": machine.name,
            "usd_per_month_at_peak_size": round(monthly, 2)}


def price_table() -> str:
    """The Markdown table of PRICES that bench/README.md carries (cost_test.py checks it)."""
    lines = [f"List prices read {PRICES_CHECKED} (USD, us-central1 / US, no discounts or free "
             "tiers applied):", "",
             "| service | item | price | source |", "| --- | --- | --- | --- |"]
    for price in PRICES:
        per = f"{price.per:,.0f} {price.unit}s" if price.per != 1 else price.unit
        if price.per == TIB:
            per = "TiB"
        elif price.per == GIB:
            per = "GiB"
        lines.append(f"| {price.service} | {price.item} | ${price.usd:g} per {per} | "
                     f"{price.source} |")
    return "\n".join(lines) + "\n"


def _per_request(results: Mapping[str, Any], kind: str) -> PerRequest | None:
    """The measured operations per request of Herald (`kind` "herald": the ingest function and
    the pipeline) or the peer (its function and worker), from a run's results; None when the
    ingest or backlog part did not count them."""
    edge = (results.get("ingest") or {}).get("ingest" if kind == "herald" else "peer") or {}
    drain = (results.get("backlog") or {}).get(kind) or {}
    if "operations" not in edge or "operations" not in drain:
        return None
    edge_requests = edge["operations"].get(opcount.PUBSUB_PUBLISHED) or 0
    delivery_requests = (drain["operations"].get(opcount.PUBSUB_ACKED)
                         or drain.get("completed") or 0)
    if not edge_requests or not delivery_requests:
        return None
    return PerRequest.measured(edge["operations"], edge_requests, edge["function_cpu_seconds"],
                               drain["operations"], delivery_requests, drain["cpu_seconds"])


def from_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """Dollars per million notifications at the design's mix, Herald and the peer, with the
    operations per request they rest on, and Herald's Dataflow sizing at the design's peak."""
    out: dict[str, Any] = {"design": {"per_day": DESIGN.per_day,
                                      "average_per_s": round(DESIGN.average_per_s, 1),
                                      "peak_per_s": round(DESIGN.peak_per_s)}}
    for kind, worker in (("herald", "dataflow"), ("peer", "cloud_run")):
        ops = _per_request(results, kind)
        if ops is None:
            continue
        out[kind] = {"per_request": {key: round(value, 6) for key, value in vars(ops).items()},
                     **usd_per_million(ops, worker=worker)}
        if kind == "herald":
            out["herald_peak"] = peak_sizing(ops.worker_cpu_s)
    return out
