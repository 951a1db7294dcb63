"""`herald report`: one self-contained HTML page of delivery analytics from the dbt marts.

The figures and queries are herald/analytics.py's, the same the notebook shows; here they are
embedded as base64 PNGs next to the marts as HTML tables, so the file can be mailed or opened
anywhere. Written to reports/herald-report-<date>.html (reports/ is not committed).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from herald import analytics
from herald.settings import Settings

DEFAULT_DIR = Path("reports")

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
table.mart { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
table.mart th, table.mart td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.mart th { background: #f4f4f4; }
"""


def figure_png(figure: Figure) -> str:
    """The figure as base64 PNG text, ready for a data: URL."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(name: str, caption: str, figure: Figure) -> str:
    return (f'<figure id="figure-{name}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{figure_png(figure)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _format(value: object) -> str:
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table_html(name: str, title: str, frame: pd.DataFrame) -> str:
    body = frame.to_html(index=False, classes="mart", table_id=f"table-{name}", border=0,
                         formatters={c: _format for c in frame.columns}, na_rep="")
    return f'<h3>{html.escape(title)}</h3>\n{body}'


def render_report(marts: analytics.Marts, generated: datetime) -> str:
    """The report's HTML: figures first, then the marts they come from."""
    funnel = marts.funnel()
    rates = marts.delivery_rates()
    quantiles = marts.latency_quantiles()
    failures = marts.failures()
    sections = [
        "<h2>Figures</h2>",
        _figure_html("funnel", "Delivery funnel per channel", analytics.funnel_figure(funnel)),
        _figure_html("delivery-rate", "Delivery rate per day and channel",
                     analytics.delivery_rate_figure(rates)),
        _figure_html("latency-cdf", "Latency CDF per channel (int_deliveries)",
                     analytics.latency_cdf_figure(quantiles)),
        _figure_html("failures", "Failures by reason", analytics.failures_figure(failures)),
        "<h2>Marts</h2>",
        _table_html("funnel", "Funnel per channel (delivery_funnel_daily, all days)", funnel),
        _table_html("delivery_rates_daily", "Delivery rates per day (delivery_rates_daily)", rates),
        _table_html("push_delivery", "Push delivered and opened per platform and source: FCM's "
                    "BigQuery export, app receipts (push_delivery_daily, all days)",
                    marts.push_delivery()),
        _table_html("send_slo_daily", "Handed to the provider within 10 s (send_slo_daily)",
                    marts.send_slo()),
        _table_html("delivery_latency_daily",
                    "Latency percentiles per day, ms (delivery_latency_daily)",
                    marts.latency_daily()),
        _table_html("delivery_failures", "Failures (delivery_failures_daily, all days)", failures),
        _table_html("opt_out_suppressions", "Opt-out suppressions "
                    "(opt_out_suppressions_daily, all days)", marts.suppressions()),
        _table_html("provider_opt_outs", "Opt-outs the providers reported "
                    "(provider_opt_outs_daily, all days)", marts.provider_opt_outs()),
    ]
    title = f"Herald delivery report: {marts.project}.{marts.dataset}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Generated {generated:%Y-%m-%d %H:%M} UTC from the dbt marts. Days are '
        "UTC days of acceptance. Push delivery comes from FCM's BigQuery export (apps that "
        "enabled delivery export) and "
        "from app receipts; a push no source could confirm is unknown, not undelivered.</p>",
        *sections,
        "</body></html>", ""])


def write_report(settings: Settings, out_dir: Path = DEFAULT_DIR,
                 now: datetime | None = None) -> Path:
    """Render the report for the settings' dataset into out_dir/herald-report-<date>.html."""
    generated = now or datetime.now(timezone.utc)
    page = render_report(analytics.Marts.for_settings(settings), generated)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"herald-report-{generated:%Y-%m-%d}.html"
    path.write_text(page, encoding="utf-8")
    return path
