"""The bars, and the results as JSON (bench/results.json) and Markdown (bench/RESULTS.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from herald.bench import profile

GIB = 1 << 30


@dataclass(frozen=True)
class Bar:
    key: str
    label: str
    threshold: str
    value: Callable[[Mapping[str, Any]], Any]
    """The measured figure from results, or None when that part did not run or failed."""
    passes: Callable[[Any], bool]
    show: Callable[[Any], str] = str


def _get(results: Mapping[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _seconds(value: Any) -> float | None:
    """A latency figure from stats.Summary.to_json: number, "inf" (not seen in time) or None."""
    if value is None:
        return None
    return float("inf") if value == "inf" else float(value)


def _show_s(value: float) -> str:
    return "> observed window (never seen)" if value == float("inf") else f"{value:.3f} s"


def _rate_key(results: Mapping[str, Any], rate: float) -> Mapping[str, Any] | None:
    phase = _get(results, "pipeline", f"rate_{rate:g}")
    return None if phase is None or "error" in phase else phase


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _drain_ratio(results: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """Herald's drain rate / the peer's, on the same pre-filled backlog; and both rates."""
    herald = _get(results, "backlog", "herald", "rate_per_s")
    peer = _get(results, "backlog", "peer", "rate_per_s")
    ratio = _ratio(herald, peer)
    return None if ratio is None else (ratio, herald, peer)


def _growth(results: Mapping[str, Any]) -> tuple[float, float, float, int, int] | None:
    """Drain rate with the large backlog / with the small one (Herald), both rates and sizes."""
    large, small = _get(results, "growth", "large") or {}, _get(results, "growth", "small") or {}
    ratio = _ratio(large.get("rate_per_s"), small.get("rate_per_s"))
    return None if ratio is None else (ratio, large["rate_per_s"], small["rate_per_s"],
                                       large["requests"], small["requests"])


def _faults(results: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    herald = _get(results, "faults", "herald")
    if not herald or "error" in herald or "lost" not in herald:
        return None
    peer = _get(results, "faults", "peer")
    return herald, (peer if peer and "lost" in peer else None)


def _show_faults(value: tuple[dict[str, Any], dict[str, Any] | None]) -> str:
    herald, peer = value
    text = (f"Herald {herald['lost']} lost, {herald['duplicates']} twice of "
            f"{herald['deliveries_expected']:,}")
    if peer:
        text += (f"; peer {peer['lost']} lost, {peer['duplicates']} twice of "
                 f"{peer['deliveries_expected']:,}")
    return text


def _cost(results: Mapping[str, Any]) -> tuple[float, float | None] | None:
    herald = _get(results, "cost", "herald", "total")
    return None if herald is None else (herald, _get(results, "cost", "peer", "total"))


FAULTS_DUPLICATE_SHARE = 0.001
"""At most this share of deliveries sent twice under faults (tests/chaos_test.py's bar for push,
where firebase-admin re-POSTs a timed-out request by itself)."""
COST_BAR_USD = 3.0


def _peak_pipeline_rss(results: Mapping[str, Any]) -> int | None:
    peaks = results.get("memory_peak_bytes") or {}
    values = [value for name, value in peaks.items() if name.startswith("pipeline_")]
    return max(values) if values else None


BARS: tuple[Bar, ...] = (
    Bar("ingest_vs_peer", "Ingest rate / peer function rate (idempotency on)", ">= 0.7x",
        lambda r: _get(r, "ingest", "ratio_to_peer"), lambda v: v >= 0.7, lambda v: f"{v:.2f}x"),
    Bar("ingest_p99", "Ingest p99 latency, 32 connections", "< 100 ms",
        lambda r: _get(r, "ingest", "ingest", "p99_ms"), lambda v: v < 100,
        lambda v: f"{v:.1f} ms"),
    Bar("drain_vs_peer", "Delivered rate on a pre-filled backlog: Herald / peer", ">= 1.0x",
        _drain_ratio, lambda v: v[0] >= 1.0,
        lambda v: f"{v[0]:.2f}x (Herald {v[1]:,.1f}/s, peer {v[2]:,.1f}/s)"),
    Bar("pipeline_185_sustained", "Pipeline @185/s: sustained (no growing backlog)",
        "accepted >= 95% of offered, backlog growth <= 2% of offered /s",
        lambda r: (None if _rate_key(r, 185) is None else
                   (_rate_key(r, 185)["sustained"], _rate_key(r, 185)["accepted_rate"],
                    _rate_key(r, 185)["delivered_rate"], _rate_key(r, 185)["backlog_growth_per_s"])),
        lambda v: bool(v[0]),
        lambda v: f"accepted {v[1]:,.1f}/s, delivered {v[2]:,.1f}/s, backlog {v[3]:+,.1f}/s"),
    Bar("pipeline_185_p99", "Pipeline @185/s: p99 202 -> provider", "< 10 s",
        lambda r: _seconds(_get(_rate_key(r, 185) or {}, "latency_delivery", "p99_s")),
        lambda v: v < 10.0, _show_s),
    Bar("pipeline_50_p99", "Pipeline @50/s: p99 202 -> provider", "< 2 s",
        lambda r: _seconds(_get(_rate_key(r, 50) or {}, "latency_delivery", "p99_s")),
        lambda v: v < 2.0, _show_s),
    Bar("growth", "Drain rate, large backlog / small backlog", ">= 0.9x", _growth,
        lambda v: v[0] >= 0.9,
        lambda v: f"{v[0]:.2f}x ({v[1]:,.1f}/s with {v[3]:,} queued, {v[2]:,.1f}/s with "
                  f"{v[4]:,})"),
    Bar("cost", "Google Cloud $ per million notifications at the design's mix (provider fees "
        "excluded)", f"<= ${COST_BAR_USD:g}", _cost, lambda v: v[0] <= COST_BAR_USD,
        lambda v: f"Herald ${v[0]:,.2f}" + (f" (peer ${v[1]:,.2f})" if v[1] is not None else "")),
    Bar("faults", "With 20% transient provider faults: deliveries lost / sent twice (Herald)",
        f"0 lost, <= {FAULTS_DUPLICATE_SHARE:.1%} twice", _faults,
        lambda v: v[0]["lost"] == 0 and v[0]["duplicates"]
        <= FAULTS_DUPLICATE_SHARE * v[0]["deliveries_expected"], _show_faults),
    Bar("priority_high_p99", "High priority p99 202 -> provider, 3,000 routine requests waiting",
        "< 1 s", lambda r: _seconds(_get(r, "priority", "urgent_latency", "p99_s")),
        lambda v: v < 1.0, _show_s),
    Bar("scheduled_lateness", "Scheduled sends: provider time - sendTime, p50 / p99",
        "0 s <= each <= 10 s, none early",
        lambda r: (None if _get(r, "priority", "scheduled_lateness") is None else
                   (_seconds(_get(r, "priority", "scheduled_lateness", "p50_s")),
                    _seconds(_get(r, "priority", "scheduled_lateness", "p99_s")),
                    _get(r, "priority", "scheduled_early"))),
        lambda v: v[2] == 0 and 0 <= v[0] <= v[1] <= 10,
        lambda v: f"{_show_s(v[0])} / {_show_s(v[1])}, {v[2]} early"),
    Bar("bulk_email", "Bulk email: SendGrid requests per 1,000 recipients", "<= 1.05",
        lambda r: (None if _get(r, "bulk", "error") or _get(r, "bulk", "incomplete") else
                   _get(r, "bulk", "requests_per_1000_recipients")),
        lambda v: v <= 1.05, lambda v: f"{v:,.2f}"),
    Bar("pipeline_rss", "Pipeline peak RSS (process tree)", "< 2 GB",
        _peak_pipeline_rss, lambda v: v < 2 * GIB, lambda v: f"{v / (1 << 20):,.0f} MiB"),
)


def evaluate(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every bar: PASS, FAIL, or NOT MEASURED (the part did not run, failed, or was incomplete)."""
    verdicts = []
    for bar in BARS:
        try:
            value = bar.value(results)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            value = None
        if value is None:
            verdict, shown = "NOT MEASURED", "n/a"
        else:
            verdict, shown = ("PASS" if bar.passes(value) else "FAIL"), bar.show(value)
        verdicts.append({"bar": bar.key, "label": bar.label, "threshold": bar.threshold,
                         "value": shown, "verdict": verdict})
    return verdicts


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if value == "inf":
        return "> window"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _ms(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    if seconds == "inf":
        return "> window"
    return f"{seconds * 1000:,.1f} ms"


def _s(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    if seconds == "inf":
        return "> window"
    return f"{seconds:,.3f} s"


DRAIN_LABELS = {"herald": "Herald pipeline", "peer": "peer worker"}


def _drain_rows(drains: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| delivery side | processes | requests | completed | rate (first -> last) | "
             "span | CPU (cores) | CPU s per request | machine busy | not the bench's |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, drain in drains.items():
        if "error" in drain:
            lines.append(f"| {name} | error: {drain['error']} |" + " |" * 8)
            continue
        per_request = _ratio(drain.get("cpu_seconds"), drain.get("completed"))
        lines.append(
            f"| {name} | {_fmt(drain.get('workers'))} | {_fmt(drain.get('requests'))} | "
            f"{_fmt(drain.get('completed'))} | **{_fmt(drain.get('rate_per_s'), '/s')}** | "
            f"{_fmt(drain.get('reading_s'), ' s')} | "
            f"{_fmt(drain.get('pipeline_cpu_cores'), '', 2)} | {_fmt(per_request, '', 4)} | "
            f"{_fmt(drain.get('machine_busy_cores'), '', 2)} | "
            f"{_fmt(drain.get('other_work_cores'), '', 2)} |")
    return lines


def _faults_rows(faults: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| delivery side | requests | deliveries expected | reached | lost | sent twice |",
             "| --- | --- | --- | --- | --- | --- |"]
    for kind, part in faults.items():
        if "error" in part:
            lines.append(f"| {DRAIN_LABELS.get(kind, kind)} | error: {part['error']} |" + " |" * 4)
            continue
        lines.append(f"| {DRAIN_LABELS.get(kind, kind)} | {_fmt(part['requests'])} | "
                     f"{_fmt(part['deliveries_expected'])} | {_fmt(part['deliveries_reached'])} | "
                     f"{_fmt(part['lost'])} ({_fmt(part['loss_rate'], '', 4)}) | "
                     f"{_fmt(part['duplicates'])} ({_fmt(part['duplicate_rate'], '', 4)}) |")
    for event in faults.get("herald", {}).get("lost_trail", []):
        lines.append(f"\nNot reached, as Herald recorded it: {event['event_ts']} "
                     f"{event['notification_id']} {event['span_id'] or '-'} {event['status']} "
                     f"{event['reason'] or '-'} {event['provider_code'] or '-'} "
                     f"{' '.join((event['detail'] or '').split())[:160]}")
    return lines


COST_OPS = (("firestore_reads", "Firestore document reads"),
            ("firestore_writes", "Firestore document writes"),
            ("firestore_deletes", "Firestore document deletes"),
            ("pubsub_publish_billed_bytes", "Pub/Sub publish, billed bytes"),
            ("pubsub_delivered_billed_bytes", "Pub/Sub delivery, billed bytes"),
            ("bigquery_billed_bytes", "BigQuery streaming insert, billed bytes"),
            ("function_cpu_s", "function CPU seconds"),
            ("worker_cpu_s", "delivery CPU seconds (pipeline / worker)"))
SIDES = {"herald": "Herald", "peer": "peer"}


def _cost_lines(cost: Mapping[str, Any]) -> list[str]:
    kinds = [kind for kind in SIDES if kind in cost]
    if not kinds:
        return ["Not measured: the cost needs the ingest and backlog parts (their op counts)."]
    design = cost["design"]
    header = " | ".join(SIDES[kind] for kind in kinds)
    lines = [f"At the design's load: {design['per_day']:,} notifications a day (10M push, 1M SMS, "
             f"5M email), {design['average_per_s']:,}/s on average; list prices and what is "
             "counted how: bench/README.md.", "",
             f"| per request | {header} |", "| --- |" + " --- |" * len(kinds)]
    for key, label in COST_OPS:
        lines.append(f"| {label} | " + " | ".join(
            _fmt(cost[k]["per_request"].get(key), "", 4) for k in kinds) + " |")
    items = list(dict.fromkeys(item for k in kinds for item in cost[k]["lines"]))
    lines += ["", f"| $ per million notifications | {header} |", "| --- |" + " --- |" * len(kinds)]
    for item in items:
        lines.append(f"| {item} | " + " | ".join(
            _fmt(cost[k]["lines"][item], "", 3) if item in cost[k]["lines"] else "-"
            for k in kinds) + " |")
    lines.append("| **total** | " + " | ".join(f"**${cost[k]['total']:,.2f}**" for k in kinds)
                 + " |")
    sizing = [f"{SIDES[k]}: " + ", ".join(f"{name} {value}" for name, value in
                                          cost[k]["sizing"].items()) for k in kinds]
    lines += ["", f"Delivery side at the average load: {'; '.join(sizing)}."]
    peak = cost.get("herald_peak")
    if peak:
        lines.append(f"At the design's peak ({peak['peak_per_s']:,}/s) Herald's pipeline needs "
                     f"{peak['workers']} {peak['machine']} Dataflow worker(s) by the measured CPU "
                     f"per request: ${peak['usd_per_month_at_peak_size']:,.2f} a month if it "
                     "stayed at that size.")
    return lines


def _bulk_text(bulk: Mapping[str, Any]) -> str:
    return (f"A bulk email to {_fmt(bulk.get('accepted'))} users (`userIds`, pages of 1,000): "
            f"{_fmt(bulk.get('recipients_delivered'))} recipients reached the ledger in "
            f"{_fmt(bulk.get('sendgrid_requests'))} SendGrid requests = "
            f"**{_fmt(bulk.get('requests_per_1000_recipients'), '', 2)} per 1,000 recipients** "
            f"(floor {_fmt(bulk.get('floor_per_1000_recipients'), '', 2)}); all in the ledger "
            f"{_fmt(bulk.get('delivered_within_s'), ' s')} after the first POST."
            + (f" Incomplete: {bulk['incomplete']}." if bulk.get("incomplete") else ""))


def render_markdown(results: Mapping[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = [
        "# Herald benchmark results",
        "",
        f"- Date: {meta.get('date', 'n/a')}; mode: **{meta.get('mode', 'n/a')}**; "
        f"wall time {_fmt(meta.get('wall_s'), ' s', 0)}",
        f"- Machine: {meta.get('cpu_count', 'n/a')} cores ({meta.get('cpu_model', 'unknown CPU')}), "
        f"{_fmt(meta.get('memory_gib'), ' GiB')} RAM, {meta.get('platform', '')}; Python "
        f"{meta.get('python', '')}; busy cores before start (other work on the box): "
        f"{_fmt(meta.get('background_busy_cores'), '', 2)}",
        "- Everything (emulators, sandbox, function, pipeline, load generator) shares this machine; "
        "\"other work\" is CPU used on it by processes the bench did not start.",
        f"- Produced by `herald bench{' --quick' if meta.get('mode') == 'quick' else ''}`; "
        "what each figure means: bench/README.md.",
    ]
    if results.get("profiles"):
        lines.append(f"- py-spy profiles of this run (where the time goes): "
                     f"bench/{file_names(meta.get('mode', 'full'))[2]}.")
    if (meta.get("background_busy_cores") or 0) > 0.25:
        lines += ["", f"**Warning:** {meta['background_busy_cores']:.2f} cores were already busy "
                  "with other work when the run started; every figure below shares the machine "
                  "with it and understates what an idle machine would give."]
    if results.get("errors"):
        lines += ["", "**Errors during the run:**", ""]
        lines += [f"- {error}" for error in results["errors"]]
    lines += ["", "## Bars", "", "| bar | threshold | measured | verdict |", "| --- | --- | --- | --- |"]
    for verdict in results.get("verdicts") or evaluate(results):
        lines.append(f"| {verdict['label']} | {verdict['threshold']} | {verdict['value']} | "
                     f"**{verdict['verdict']}** |")

    ingest = results.get("ingest")
    if ingest:
        settings = ingest.get("server_settings", {})
        server = ingest.get("ingest_server", {})
        lines += ["", "## Ingest (closed loop)", "",
                  f"{ingest['connections']} keep-alive connections, {_fmt(ingest['warmup_s'])} s "
                  f"warm-up then {_fmt(ingest['duration_s'])} s measured, per target. "
                  f"functions-framework without --debug: {server.get('server', 'n/a')} with "
                  f"WORKERS={settings.get('WORKERS')} THREADS={settings.get('THREADS')} "
                  "(--workers/--threads, else the environment, else one worker and the local "
                  "stack's threads); "
                  "no pipeline is reading during this part.", "",
                  "| target | req/s | p50 | p99 | non-2xx / errors | function CPU (cores) | "
                  "generator CPU (cores) | machine busy (cores) | of it, not the bench's (cores) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, label in (("ingest", "Herald ingest function"),
                            ("peer", "peer function (validate, publish)")):
            part = ingest.get(name)
            if not part:
                continue
            bad = sum(v for k, v in part["statuses"].items() if not k.startswith("2"))
            bad += sum(part["errors"].values())
            lines.append(f"| {label} | {_fmt(part['requests_per_s'], '', 0)} | "
                         f"{_fmt(part['p50_ms'], ' ms')} | {_fmt(part['p99_ms'], ' ms')} | {bad} | "
                         f"{_fmt(part['cpu_cores'].get('function'), '', 2)} | "
                         f"{_fmt(part['generator_cpu_cores'], '', 2)} | "
                         f"{_fmt(part['machine_busy_cores'], '', 2)} | "
                         f"{_fmt(part.get('other_work_cores'), '', 2)} |")
        lines.append(f"\nRatio ingest / peer: **{_fmt(ingest.get('ratio_to_peer'), 'x', 2)}**"
                     + (f"; Pub/Sub emulator CPU during ingest: "
                        f"{_fmt(ingest['ingest']['cpu_cores'].get('pubsub_emulator'), ' cores', 2)}"
                        if ingest.get("ingest") else ""))

    pipeline = results.get("pipeline") or {}
    if pipeline:
        lines += ["", "## Pipeline (open loop, accept -> sandbox ledger)", "",
                  "Per offered load: a fresh pipeline on a fresh subscription, warmed up, then "
                  "requests paced evenly for the duration; latency per delivery from the 202 to the "
                  "ledger entry (`> window` = not delivered by the end of observation, counted as "
                  "infinitely late).", "",
                  "| offered | accepted | delivered | p50 | p95 | p99 | not seen | backlog at end of "
                  "load | backlog growth | sustained | pipeline CPU | generator CPU | other work "
                  "on the machine |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for key, phase in pipeline.items():
            if "error" in phase:
                lines.append(f"| {_fmt(phase.get('offered_rate'), '/s', 0)} | error: "
                             f"{phase['error']} |" + " |" * 11)
                continue
            delivery = phase["latency_delivery"]
            lines.append(
                f"| {_fmt(phase['offered_rate'], '/s', 0)} | {_fmt(phase['accepted_rate'], '/s')} | "
                f"{_fmt(phase['delivered_rate'], '/s')} | {_s(delivery['p50_s'])} | "
                f"{_s(delivery['p95_s'])} | {_s(delivery['p99_s'])} | "
                f"{_fmt(delivery['censored'])} of {_fmt(delivery['count'])} | "
                f"{_fmt(phase['backlog_end_of_load'])} | {_fmt(phase['backlog_growth_per_s'], '/s')} | "
                f"{'yes' if phase['sustained'] else 'no'} | "
                f"{_fmt(phase.get('pipeline_cpu_cores'), '', 2)} | "
                f"{_fmt(phase.get('generator_cpu_cores'), '', 2)} | "
                f"{_fmt(phase.get('other_work_cores'), '', 2)} |")
        for key, phase in pipeline.items():
            if "error" in phase or not phase.get("timeline"):
                continue
            step = max(1, int(phase["duration_s"] // 6))
            rows = [row for row in phase["timeline"] if row["t_s"] % step == 0 or
                    row is phase["timeline"][-1]]
            ingest_202 = phase["latency_ingest_202"]
            lines += ["", f"### Backlog over time at {_fmt(phase['offered_rate'], '/s', 0)} "
                      f"(warm-up {_fmt(phase.get('warmup_s'), ' s')}; 202 latency p50 "
                      f"{_ms(ingest_202['p50_s'])}, p99 {_ms(ingest_202['p99_s'])}; observed "
                      f"{_fmt(phase['observed_s'])} s)", ""]
            if phase.get("request_errors"):
                lines += ["Requests not accepted: " + "; ".join(
                    f"{count:,} {reason}" for reason, count in phase["request_errors"].items()), ""]
            lines += ["| t (s) | offered | sent | accepted | delivered | backlog |",
                      "| --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {row['t_s']:g} | {row['offered']:,} | {row['sent']:,} | "
                      f"{row['accepted']:,} | {row['delivered']:,} | {row['backlog']:,} |"
                      for row in rows]

    backlog = results.get("backlog") or {}
    if backlog:
        lines += ["", "## Delivery on a pre-filled backlog: Herald and the peer", "",
                  "Warm fresh delivery processes on fresh subscriptions, then the requests "
                  "published at once; requests completed (every delivery in the ledger) per "
                  "second from the first completion to the last.", ""]
        lines += _drain_rows({DRAIN_LABELS.get(k, k): v for k, v in backlog.items()
                              if isinstance(v, Mapping)})
    growth = results.get("growth") or {}
    if growth:
        lines += ["", "## Growth: Herald's drain rate with a small and a large backlog", ""]
        lines += _drain_rows({f"{v.get('requests', 0):,} queued": v for v in
                              (growth.get("small"), growth.get("large")) if v})
    faults = results.get("faults") or {}
    if faults:
        lines += ["", "## With the sandbox's faults on (20% transient provider errors)", "",
                  "Pre-filled requests; deliveries counted in the sandbox ledger by (request, "
                  "recipient): lost = expected and never reached, sent twice = reached more "
                  "than once.", ""]
        lines += _faults_rows(faults)
    if results.get("cost"):
        lines += ["", "## Cost per million notifications (Google Cloud only)", ""]
        lines += _cost_lines(results["cost"])
    part = results.get("bulk")
    if part:
        lines += ["", "## Bulk email", "",
                  f"error: {part['error']}" if "error" in part else _bulk_text(part)]

    peaks = results.get("memory_peak_bytes")
    if peaks:
        lines += ["", "## Peak RSS (process trees, sampled every 0.25 s)", "",
                  "| process tree | peak RSS |", "| --- | --- |"]
        lines += [f"| {name} | {value / (1 << 20):,.0f} MiB |" for name, value in peaks.items()]
    return "\n".join(lines) + "\n"


def file_names(mode: str) -> tuple[str, str, str]:
    """The results JSON, RESULTS and PROFILE Markdown names: a --quick run writes files of its own
    (ignored by git), so a smoke run never overwrites the committed ones."""
    suffix = "-quick" if mode == "quick" else ""
    return f"results{suffix}.json", f"RESULTS{suffix}.md", f"PROFILE{suffix}.md"


def write(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The results JSON and RESULTS Markdown, and PROFILE Markdown when profiles were taken."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_name, markdown_name, profile_name = file_names(results.get("meta", {}).get("mode", "full"))
    files = {out_dir / json_name: json.dumps(results, indent=2, default=str) + "\n",
             out_dir / markdown_name: render_markdown(results)}
    if results.get("profiles"):
        files[out_dir / profile_name] = profile.render_markdown(results)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
