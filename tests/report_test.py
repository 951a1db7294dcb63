"""`herald report` writes one self-contained HTML file from the story's marts."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from herald.cli import main
from herald.report import write_report
from herald.settings import Settings

FIGURES = ("funnel", "delivery-rate", "latency-cdf", "failures")
TABLES = ("funnel", "delivery_rates_daily", "push_delivery", "send_slo_daily", "delivery_latency_daily",
          "delivery_failures", "opt_out_suppressions", "provider_opt_outs")


def test_report_embeds_figures_and_tables(built: Settings, tmp_path: Path) -> None:
    now = datetime(2026, 11, 24, 8, tzinfo=timezone.utc)
    path = write_report(built, tmp_path / "reports", now=now)
    assert path == tmp_path / "reports" / "herald-report-2026-11-24.html"
    page = path.read_text()
    for name in FIGURES:
        assert f'<figure id="figure-{name}">' in page, name
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    for name in TABLES:
        assert f'<table class="dataframe mart" id="table-{name}">' in page, name
    assert "src=\"http" not in page and "<script" not in page  # nothing fetched when opened
    # A few cells of the story (tests/dbt_models_test.py has them all).
    assert "<td>Bounced Address</td>" in page and "<td>category_opted_out</td>" in page
    assert "<td>blocked</td>" in page and "<td>STOP</td>" in page  # a soft bounce, an SMS STOP
    assert "<th>machine_opened</th>" in page
    assert "<td>0.857</td>" in page  # email's share sent within 10 s on 2026-11-02: 6 / 7
    assert "<th>delivered_fcm_export</th>" in page and "<td>0.714</td>" in page  # Android 5 / 7


def test_herald_report_uses_the_running_stacks_environment(
        built_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "local.env").write_text("".join(f"{k}={v}\n" for k, v in built_env.items()))
    monkeypatch.chdir(tmp_path)
    main(["--state-dir", str(state_dir), "report"])
    written = capsys.readouterr().out.strip().removeprefix("wrote ")
    path = Path(written)
    assert path.parent == Path("reports") and path.name.startswith("herald-report-")
    assert (tmp_path / path).read_text().count("data:image/png;base64,") == len(FIGURES)
