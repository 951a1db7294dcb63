"""Pipeline options: what a platform engineer sets on the command line, DirectRunner or Dataflow.

Defaults come from the environment the launcher runs in (the local stack's `local.env`), and the
resolved `Settings` are built once at construction and shipped to workers inside the transforms,
so Dataflow workers need no environment of their own.
"""

from __future__ import annotations

import dataclasses

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from herald.settings import Settings
from pipelines.bigquery_sink import WriteBatching

DEFAULT_DEDUPE_TTL_S = 24 * 3600
DIRECT_RUNNERS = (None, "DirectRunner", "BundleBasedDirectRunner")
DIRECT_DEDUPE_BUCKETS = 64
DIRECT_WRITE_BATCHING = WriteBatching(rows=2000, buffer_s=2.0)
"""On the DirectRunner (the local stack), fewer and larger BigQuery inserts: the emulator copies the
whole table on every insert (its time-travel snapshot), about 170 ms at 175,000 rows whether it
inserts 500 rows or 2,000, and the runner's one thread waits for each (49% of it in the full
bench's profile)."""


class HeraldOptions(PipelineOptions):
    """Herald's own flags; standard Beam/Dataflow flags (runner, project, region...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--herald_project", default=None,
                            help="GCP project of Herald's topics, Firestore and BigQuery "
                                 "(default: HERALD_PROJECT).")
        parser.add_argument("--requests_subscription", default=None,
                            help="Subscription id or full path of the requests topic "
                                 "(default: HERALD_REQUESTS_SUBSCRIPTION).")
        parser.add_argument("--lane", choices=("routine", "urgent"), default="routine",
                            help="Which requests topic the job serves: routine (normal and low "
                                 "priority) or urgent (high priority, its own topic and job; see "
                                 "Settings.urgent_requests_topic).")
        parser.add_argument("--dataset", default=None, help="BigQuery dataset (default: HERALD_DATASET).")
        parser.add_argument("--bigquery_endpoint", default=None,
                            help="BigQuery API endpoint, e.g. the local emulator "
                                 "(default: BIGQUERY_API_ENDPOINT; production when unset).")
        parser.add_argument("--provider_endpoint", default=None,
                            help="Base URL for FCM, Twilio and SendGrid, e.g. the provider sandbox "
                                 "(default: HERALD_SANDBOX_URL; the real providers when unset).")
        parser.add_argument("--batch_shards", type=int, default=1,
                            help="Keys per batching step (send, write). 1 suits the single-threaded "
                                 "DirectRunner; raise it on Dataflow to spread batches over workers.")
        parser.add_argument("--dedupe_ttl_s", type=int, default=DEFAULT_DEDUPE_TTL_S,
                            help="How long a (notificationId, channel, address) is remembered.")
        parser.add_argument("--dedupe_buckets", type=int, default=None,
                            help="State keys the dedupe keys share; 0 = one per dedupe key. "
                                 f"Default: {DIRECT_DEDUPE_BUCKETS} on the DirectRunner (which "
                                 "scans every key's timers on each pass), 0 elsewhere.")
        parser.add_argument("--write_batch_rows", type=int, default=None,
                            help="Most rows per BigQuery insert. Default: "
                                 f"{DIRECT_WRITE_BATCHING.rows} on the DirectRunner, "
                                 f"{WriteBatching.rows} (BigQuery's recommendation) elsewhere.")
        parser.add_argument("--write_buffer_s", type=float, default=None,
                            help="Longest a row waits for its insert to fill. Default: "
                                 f"{DIRECT_WRITE_BATCHING.buffer_s} on the DirectRunner, "
                                 f"{WriteBatching.buffer_s} elsewhere.")


def resolve_settings(options: PipelineOptions) -> Settings:
    """Environment defaults overridden by whatever flags were given."""
    herald = options.view_as(HeraldOptions)
    settings = Settings.from_env()
    if herald.lane == "urgent":
        settings = settings.urgent_lane()
    overrides = {
        "project": herald.herald_project,
        "requests_subscription": herald.requests_subscription,
        "dataset": herald.dataset,
        "bigquery_endpoint": herald.bigquery_endpoint,
        "fcm_endpoint": herald.provider_endpoint,
        "twilio_endpoint": herald.provider_endpoint,
        "sendgrid_endpoint": herald.provider_endpoint,
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def subscription_path(settings: Settings) -> str:
    """Accept either a bare subscription id or a full path."""
    if settings.requests_subscription.startswith("projects/"):
        return settings.requests_subscription
    return settings.subscription_path(settings.requests_subscription)


def _direct(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in DIRECT_RUNNERS


def dedupe_buckets(options: PipelineOptions) -> int:
    """`--dedupe_buckets`, or the runner's default (see its help)."""
    buckets = options.view_as(HeraldOptions).dedupe_buckets
    if buckets is not None:
        return buckets
    return DIRECT_DEDUPE_BUCKETS if _direct(options) else 0


def write_batching(options: PipelineOptions) -> WriteBatching:
    """`--write_batch_rows` and `--write_buffer_s`, each else the runner's default (see their help)."""
    herald = options.view_as(HeraldOptions)
    default = DIRECT_WRITE_BATCHING if _direct(options) else WriteBatching()
    return WriteBatching(herald.write_batch_rows or default.rows,
                         default.buffer_s if herald.write_buffer_s is None else herald.write_buffer_s)
