"""`herald demo`: the main job end to end on a private local stack, then the marts on screen.

up --seed -> mixed workload through the HTTP API -> wait for the pipeline to drain -> dbt build ->
print the marts -> write the HTML report (reports/) -> down (always, even on failure).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress as Bar
from rich.table import Table

from herald.clients import bigquery_client
from herald.dbt_project import run_dbt
from herald.local import stack
from herald.local.drain import wait_for_drain
from herald.report import write_report
from herald.settings import Settings
from herald.workload import make_requests, send_all

MARTS = ("delivery_rates_daily", "push_delivery_daily", "send_latency")


def print_table(console: Console, title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    for column in rows[0] if rows else ["(no rows)"]:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else f"{value:.3f}" if isinstance(value, float)
                        else str(value) for value in row.values()))
    console.print(table)


def fetch_mart(settings: Settings, mart: str) -> list[dict]:
    client = bigquery_client(settings)
    result = client.query(f"SELECT * FROM `{settings.project}.{settings.dataset}.{mart}` "
                          f"ORDER BY 1, 2").result()
    return [dict(row.items()) for row in result]


def run_demo(state_dir: Path, count: int, users: int) -> None:
    console = Console(width=max(Console().width, 150))  # marts are wide; piped output defaults to 80
    started = time.monotonic()
    env = stack.up(stack.StackOptions(state_dir=state_dir, seed_users=users),
                   report=lambda line: console.print(f"[dim]{line}[/dim]"))
    try:
        os.environ.update(env)
        settings = Settings.from_env(env)
        bodies = make_requests(count, users)
        with Bar(console=console) as bar:
            task = bar.add_task("sending notifications", total=len(bodies))
            sent = send_all(env["HERALD_API_URL"], env["HERALD_API_KEY"], bodies,
                            on_done=lambda: bar.advance(task))
        console.print(f"{len(sent)} requests accepted (202) in {time.monotonic() - started:.0f}s "
                      "since start; waiting for the pipeline to drain ...")
        with Bar(console=console) as bar:
            # a sender's repeat is answered with the original trace (edge idempotency)
            task = bar.add_task("pipeline settled", total=len({s.trace_id for s in sent}))
            drained = wait_for_drain(bigquery_client(settings), settings,
                                     (s.trace_id for s in sent),
                                     on_progress=lambda p: bar.update(task, completed=p.settled))
        console.print(f"drained: {drained.events} events for {drained.settled} requests; "
                      "running dbt build ...")
        run_dbt(["build"], env={**os.environ, **env})
        for mart in MARTS:
            print_table(console, mart, fetch_mart(settings, mart))
        console.print(f"report written to {write_report(settings)}")
        console.print(f"demo finished in {time.monotonic() - started:.0f}s")
    finally:
        stack.down(state_dir, report=lambda line: console.print(f"[dim]{line}[/dim]"))
