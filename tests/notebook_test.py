"""notebooks/delivery_analytics.ipynb runs top to bottom against the story's marts.

The kernel reads the dataset the way an analyst's does: from BIGQUERY_API_ENDPOINT,
HERALD_PROJECT and HERALD_DATASET in its environment (here the private emulator of
tests/conftest.py, after `dbt build` on the fixed story).
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "delivery_analytics.ipynb"


def test_notebook_runs_top_to_bottom(built_env: dict[str, str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for name, value in built_env.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"reading herald-local.{built_env['HERALD_DATASET']} on " in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 4  # funnel, delivery rate, latency CDF, failures
    tables = "\n".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    for marker in ("requested", "confirmed_delivery_rate", "slo_share",
                   "p95_due_to_delivered_ms", "Bounced Address", "category_opted_out"):
        assert marker in tables, marker
