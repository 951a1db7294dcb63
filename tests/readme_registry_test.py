"""The README's registry and template examples, run as written (bash and curl) against the whole
local stack: a new user registers a device, switches a category off, and the next notification in
that category is suppressed; a templated push reaches the user in their language; every change is
an event in BigQuery."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from google.cloud import bigquery

from herald.clients import bigquery_client
from herald.local.drain import wait_for_drain
from herald.settings import DEFAULT_LOCAL_CLIENT, Settings

pytestmark = pytest.mark.slow
README = Path(__file__).parents[1] / "README.md"


def sh_block(heading: str) -> str:
    """The first ```sh block under the README's `## heading`."""
    text = README.read_text()
    section = text[text.index(f"## {heading}\n"):]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_examples_work_as_written(local_stack: dict[str, str]) -> None:
    """The README's commands, but its look at the sandbox ledger (which it takes "a few seconds
    later") is done here once the pipeline has drained."""
    script = (sh_block("Users, devices and preferences (the registry API)")
              + sh_block("Templates")).replace(".venv/bin/herald", f"{sys.executable} -m herald")
    script = "\n".join(line for line in script.splitlines()
                       if not line.startswith('curl -s "$HERALD_SANDBOX_URL/_ledger"'))
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                         text=True, timeout=120, cwd=README.parent,
                         env={**os.environ, **local_stack})
    assert run.returncode == 0, run.stdout + run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    traces = [a["traceId"] for a in answers if a.get("status") == "accepted"]
    assert len(traces) == 3, run.stdout
    settings = Settings.from_env(local_stack)
    client = bigquery_client(settings)
    wait_for_drain(client, settings, traces, timeout_s=300)

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("traces", "STRING", traces)])
    ended = {(row["notification_id"], row["status"], row["reason"], row["locale"])
             for row in client.query(
                 f"SELECT * FROM `{settings.events_table}` WHERE trace_id IN UNNEST(@traces) "
                 "AND parent_span_id IS NOT NULL", job_config=config).result()}
    assert ("promo-1", "sent", None, None) in ended
    assert ("promo-2", "suppressed", "category_opted_out", None) in ended
    assert any(status == "sent" and locale == "ko" for _, status, _, locale in ended)

    ledger = requests.get(f"{local_stack['HERALD_SANDBOX_URL']}/_ledger", timeout=10).json()
    received = {(e["notification_id"], e["text"]) for e in ledger["entries"]
                if e["recipient"] == "tok-ana-phone"}
    assert ("promo-1", "Sale") in received
    assert not any(notification == "promo-2" for notification, _ in received)
    assert any(text == "주문 A-17 발송" for _, text in received)

    # The registry's changes travel through the callbacks pipeline, on its own schedule.
    wanted = {("preference_changed", "categories.marketing", "false", DEFAULT_LOCAL_CLIENT),
              ("registry_changed", "devices.phone", '{"platform": "ios"}', DEFAULT_LOCAL_CLIENT)}
    deadline = time.monotonic() + 120
    while True:
        changes = {(row["status"], row["setting"], row["value"], row["sender_client"])
                   for row in client.query(
                       f"SELECT * FROM `{settings.events_table}` WHERE user_id = 'ana' "
                       "AND status IN ('preference_changed', 'registry_changed')").result()}
        if wanted <= changes or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert wanted <= changes
