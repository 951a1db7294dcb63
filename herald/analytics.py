"""Delivery analytics over the dbt marts: the queries and the figures, in one place.

notebooks/delivery_analytics.ipynb and `herald report` (herald/report.py) both draw from here, so
a chart is defined once. Queries read the marts (and int_deliveries for latency distributions)
with google-cloud-bigquery, against the emulator when BIGQUERY_API_ENDPOINT is set and against
BigQuery otherwise; figures are plain matplotlib `Figure`s (no pyplot state), so they render the
same in a notebook and in a headless report.

    marts = Marts.from_env()                 # HERALD_PROJECT, HERALD_DATASET, BIGQUERY_API_ENDPOINT
    funnel_figure(marts.funnel())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import matplotlib.dates as mdates
import pandas as pd
from google.cloud import bigquery
from matplotlib.figure import Figure

from herald.clients import bigquery_client
from herald.settings import Settings

CHANNELS = ("push", "sms", "email")
CHANNEL_COLORS = {"push": "#4C72B0", "sms": "#DD8452", "email": "#55A868"}
FUNNEL_STEPS = ("requested", "eligible", "sent", "delivered", "opened", "clicked")
BESIDE_FUNNEL = ("machine_opened", "delivery_unknown")
"""Counted beside the funnel, not a step of it: delivered messages only a privacy proxy opened."""
LATENCY_STAGES = {
    "due_to_sent_ms": "due → sent (Herald)",
    "due_to_delivered_ms": "due → delivered (end to end)",
}
SEND_SLO_MS = 10_000
"""The soft real-time target (10 s from due to provider, README); the dbt var send_slo_ms."""


@dataclass(frozen=True)
class Marts:
    """Reads Herald's marts from one BigQuery dataset into DataFrames."""

    client: bigquery.Client
    project: str
    dataset: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Marts:
        """The dataset of HERALD_PROJECT / HERALD_DATASET, on the emulator at
        BIGQUERY_API_ENDPOINT if set (default: os.environ)."""
        settings = Settings.from_env(env)
        return cls.for_settings(settings)

    @classmethod
    def for_settings(cls, settings: Settings) -> Marts:
        return cls(bigquery_client(settings), settings.project, settings.dataset)

    def table(self, name: str) -> str:
        return f"`{self.project}.{self.dataset}.{name}`"

    def query(self, sql: str) -> pd.DataFrame:
        return self.client.query(sql).to_dataframe(create_bqstorage_client=False)

    # ----------------------------------------------------------------------------------------
    # Queries. SUMs are cast to INT64 (a no-op on BigQuery; the emulator widens them).

    def funnel(self) -> pd.DataFrame:
        """One row per channel: the funnel steps (opened: by a person) summed over every day,
        and the machine opens beside them."""
        sums = ",\n".join(f"cast(sum({step}) as int64) as {step}"
                          for step in (*FUNNEL_STEPS, *BESIDE_FUNNEL))
        return self._by_channel(self.query(f"""
            select channel, {sums}
            from {self.table('delivery_funnel_daily')}
            group by channel"""))

    def delivery_rates(self) -> pd.DataFrame:
        """delivery_rates_daily, oldest day first."""
        return self.query(f"""
            select * from {self.table('delivery_rates_daily')}
            order by accepted_date, channel""")

    def push_delivery(self) -> pd.DataFrame:
        """Push per platform, summed over every day, by the source that confirmed delivery (FCM's
        BigQuery export, the app's receipts), with its rates; platform order android, ios, web."""
        counts = ("sent", "confirmable", "delivery_unknown", "delivered", "delivered_fcm_export",
                  "delivered_app_receipt", "opened")
        sums = ",\n".join(f"cast(sum({c}) as int64) as {c}" for c in counts)
        return self.query(f"""
            with totals as (
                select platform, {sums}
                from {self.table('push_delivery_daily')}
                group by platform
            )
            select *,
                safe_divide(delivered, confirmable) as confirmed_delivery_rate,
                safe_divide(delivered_fcm_export, sent) as fcm_export_delivered_rate,
                safe_divide(delivered_app_receipt, sent) as app_receipt_delivered_rate,
                safe_divide(opened, delivered) as opened_rate
            from totals
            order by platform""")

    def send_slo(self) -> pd.DataFrame:
        """send_slo_daily, oldest day first."""
        return self.query(f"""
            select * from {self.table('send_slo_daily')}
            order by accepted_date, channel""")

    def latency_daily(self) -> pd.DataFrame:
        """delivery_latency_daily, oldest day first."""
        return self.query(f"""
            select * from {self.table('delivery_latency_daily')}
            order by accepted_date, channel""")

    def failures(self) -> pd.DataFrame:
        """Failed deliveries per channel, failure, bounce type (hard bounce or blocked), reason
        and provider code, most first."""
        return self._totals("delivery_failures_daily", "deliveries",
                            ("channel", "failure", "bounce_type", "reason", "provider_code"))

    def suppressions(self) -> pd.DataFrame:
        """Opt-out suppressions per channel, category and reason, most first."""
        return self._totals("opt_out_suppressions_daily", "suppressed",
                            ("channel", "category_type", "reason"))

    def provider_opt_outs(self) -> pd.DataFrame:
        """Opt-outs the providers reported per channel, provider and reason, most first."""
        return self._totals("provider_opt_outs_daily", "opt_outs",
                            ("channel", "provider", "reason"))

    def _totals(self, model: str, measure: str, keys: tuple[str, ...]) -> pd.DataFrame:
        """`measure` of a daily mart summed over every day by `keys`, largest first."""
        columns = ", ".join(keys)
        return self.query(f"""
            select {columns}, cast(sum({measure}) as int64) as {measure}
            from {self.table(model)}
            group by {columns}
            order by {measure} desc, {columns}""")

    def latency_quantiles(self, days: int | None = None) -> pd.DataFrame:
        """Latency distributions per channel from int_deliveries, as percentiles 0..100 (a CDF):
        long format, one row per (channel, stage, percentile) with the latency in ms, counted from
        when each delivery was due (int_deliveries.due_at: a scheduled send is not a late one).
        Delivered stages count deliveries that ended delivered with a delivered report. `days` limits
        it to deliveries accepted in the last N days (a partition filter on BigQuery)."""
        where = "sent_at is not null"
        if days is not None:
            where += f" and accepted_date >= date_sub(current_date(), interval {int(days)} day)"
        frame = self.query(f"""
            with

            sent as (
                select
                    channel,
                    due_to_sent_ms,
                    if(final_status = 'delivered', due_to_delivered_ms, null)
                        as due_to_delivered_ms
                from {self.table('int_deliveries')}
                where {where}
            ),

            final as (
                select
                    channel,
                    approx_quantiles(due_to_sent_ms, 100) as due_to_sent_ms,
                    approx_quantiles(due_to_delivered_ms, 100) as due_to_delivered_ms
                from sent
                group by channel
            )

            select * from final""")
        rows = []
        for record in frame.to_dict("records"):
            for stage in LATENCY_STAGES:
                values = record[stage]
                if values is None or len(values) == 0:
                    continue  # no delivered reports on this channel (push)
                rows.extend({"channel": record["channel"], "stage": stage, "percentile": p,
                             "ms": float(ms)} for p, ms in enumerate(values))
        return pd.DataFrame(rows, columns=["channel", "stage", "percentile", "ms"])

    @staticmethod
    def _by_channel(frame: pd.DataFrame) -> pd.DataFrame:
        order = {channel: i for i, channel in enumerate(CHANNELS)}
        return frame.sort_values("channel", key=lambda c: c.map(order)).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Figures


def _dates(column: pd.Series) -> pd.Series:
    """BigQuery DATEs (db-dtypes `dbdate`) as datetimes matplotlib can place."""
    return pd.to_datetime(column.astype(str))


def _by_channel(frame: pd.DataFrame):
    """(channel, rows) in push, sms, email order, then any other channel."""
    present = list(dict.fromkeys(frame["channel"]))
    for channel in [c for c in CHANNELS if c in present] + [c for c in present
                                                            if c not in CHANNELS]:
        yield channel, frame[frame["channel"] == channel]


def _day_axis(ax, dates: pd.Series) -> None:
    """Ticks on days, never hours: each day when there are few, else matplotlib's choice."""
    days = sorted(set(dates))
    if len(days) <= 14:
        ax.set_xticks(days)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.margins(x=0.05)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def funnel_figure(funnel: pd.DataFrame) -> Figure:
    """Grouped bars: each funnel step per channel, labelled with its share of requested."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Delivery funnel: requested → eligible → sent → delivered → opened → clicked")
    if funnel.empty:
        _empty(ax, "no deliveries")
        return figure
    width = 0.8 / len(funnel)
    for i, row in enumerate(funnel.to_dict("records")):
        counts = [float(row[step]) for step in FUNNEL_STEPS]
        positions = [x + (i - (len(funnel) - 1) / 2) * width for x in range(len(FUNNEL_STEPS))]
        bars = ax.bar(positions, counts, width, label=row["channel"],
                      color=CHANNEL_COLORS.get(row["channel"]))
        requested = counts[0] or 1.0
        ax.bar_label(bars, labels=[f"{c / requested:.0%}" for c in counts], fontsize=7,
                     padding=2)
    ax.set_xticks(range(len(FUNNEL_STEPS)), FUNNEL_STEPS)
    ax.set_ylabel("deliveries")
    ax.legend(title="channel")
    ax.margins(y=0.12)
    return figure


def delivery_rate_figure(rates: pd.DataFrame) -> Figure:
    """Per channel over time: sent / eligible, and delivered / confirmable (the sends a source
    could have confirmed: unknown push is left out, not counted undelivered)."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Delivery rate per day of acceptance")
    if rates.empty:
        _empty(ax, "no deliveries")
        return figure
    for channel, days in _by_channel(rates):
        color = CHANNEL_COLORS.get(channel)
        dates = _dates(days["accepted_date"])
        ax.plot(dates, days["delivery_rate"].astype(float), marker="o", color=color,
                label=f"{channel}: sent / eligible")
        confirmed = days["confirmed_delivery_rate"].astype(float)
        if confirmed.notna().any():
            ax.plot(dates, confirmed, marker="s", linestyle="--", color=color,
                    label=f"{channel}: delivered / confirmable")
    ax.set_ylim(-0.02, 1.05)
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set_ylabel("share")
    _day_axis(ax, _dates(rates["accepted_date"]))
    ax.legend(fontsize=8, loc="lower left")
    figure.autofmt_xdate()
    return figure


def latency_cdf_figure(quantiles: pd.DataFrame, slo_ms: int = SEND_SLO_MS) -> Figure:
    """One panel per stage: the share of deliveries done within x ms, per channel (log x)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots(1, len(LATENCY_STAGES), sharey=True)
    figure.suptitle("Latency CDF per channel")
    for ax, (stage, title) in zip(axes, LATENCY_STAGES.items()):
        ax.set_title(title)
        stage_rows = quantiles[quantiles["stage"] == stage] if not quantiles.empty else quantiles
        if stage_rows.empty:
            _empty(ax, "no deliveries")
            continue
        for channel, points in _by_channel(stage_rows):
            ax.step(points["ms"].clip(lower=1), points["percentile"] / 100, where="post",
                    color=CHANNEL_COLORS.get(channel), label=channel)
        if stage == "due_to_sent_ms":
            ax.axvline(slo_ms, color="red", linestyle=":", label=f"SLO {slo_ms / 1000:g} s")
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds")
        ax.yaxis.set_major_formatter("{x:.0%}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("share of deliveries")
    return figure


def failures_figure(failures: pd.DataFrame) -> Figure:
    """Horizontal bars: failed deliveries by channel, failure, and reason or provider code."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Failures by reason")
    if failures.empty:
        _empty(ax, "no failures")
        return figure
    rows = failures.to_dict("records")[::-1]  # most at the top
    labels = []
    for row in rows:
        why = " / ".join(str(v) for v in (row["reason"], row["provider_code"])
                         if v is not None and not pd.isna(v)) or "no reason given"
        failure = row["failure"]
        if row.get("bounce_type") is not None and not pd.isna(row["bounce_type"]):
            failure = f"{failure} ({'hard' if row['bounce_type'] == 'bounce' else 'blocked'})"
        labels.append(f"{row['channel']} · {failure} · {why}")
    ax.barh(labels, [float(row["deliveries"]) for row in rows],
            color=[CHANNEL_COLORS.get(row["channel"]) for row in rows])
    ax.set_xlabel("deliveries")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return figure
