"""Pipeline options: what a platform engineer sets on the command line, DirectRunner or Dataflow.

Defaults come from the environment the launcher runs in (the local stack's `local.env`), and the
resolved `Settings` are built once at construction and shipped to workers inside the transforms,
so Dataflow workers need no environment of their own.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from herald.settings import Settings
from pipelines.bigquery_sink import WriteBatching

DEFAULT_DEDUPE_TTL_S = 24 * 3600
DIRECT_RUNNERS = (None, "DirectRunner", "BundleBasedDirectRunner")
DIRECT_DEDUPE_BUCKETS = 64
DIRECT_WRITE_BATCHING = WriteBatching(rows=2000, buffer_s=2.0, concurrency=4)
"""On the DirectRunner (the local stack), fewer and larger BigQuery inserts: the emulator copies the
whole table on every insert (its time-travel snapshot), about 170 ms at 175,000 rows whether it
inserts 500 rows or 2,000; and up to 4 inserts (and status writes) in flight beside the runner's
one thread instead of on it (it waited on them 55% of the time in the full bench's profile)."""


JOBS = ("delivery", "callbacks")
"""Herald's streaming jobs: pipelines/herald_pipeline.py and pipelines/callback_pipeline.py."""

OPTION_GROUPS = {
    "Herald, both jobs": JOBS,
    "Herald delivery job": ("delivery",),
    "Herald callbacks job": ("callbacks",),
}
"""The argparse groups of HeraldOptions and the jobs that read their flags: `--help` shows them,
and each job's Flex Template takes its groups' flags as parameters (herald/flex_templates.py)."""


class HeraldOptions(PipelineOptions):
    """Herald's own flags; standard Beam/Dataflow flags (runner, project, region...) pass through."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        both, delivery, callbacks = (parser.add_argument_group(title) for title in OPTION_GROUPS)
        both.add_argument("--herald_project", default=None,
                          help="GCP project of Herald's topics, Firestore and BigQuery "
                               "(default: HERALD_PROJECT, else the job's --project).")
        both.add_argument("--dataset", default=None, help="BigQuery dataset (default: HERALD_DATASET, "
                                                          "else herald).")
        both.add_argument("--bigquery_endpoint", default=None,
                          help="BigQuery API endpoint, e.g. the local emulator "
                               "(default: BIGQUERY_API_ENDPOINT; production when unset).")
        both.add_argument("--settings_env", default=None,
                          help="More settings, as a JSON object of the environment variables "
                               "herald/settings.py reads, e.g. {\"TWILIO_FROM_NUMBER\": "
                               "\"+15550100\"}; over the launcher's own environment.")
        both.add_argument("--secret_env", default=None,
                          help="Settings read from Secret Manager when the job is launched, as a "
                               "JSON object of environment variable -> secret (an id in the Herald "
                               "project, or projects/P/secrets/S; its latest version), e.g. "
                               "{\"TWILIO_AUTH_TOKEN\": \"herald-twilio-auth-token\"}. The values "
                               "travel in the job's graph: keep its staging bucket private.")
        both.add_argument("--batch_shards", type=int, default=1,
                          help="Keys per batching step (send, write). 1 suits the single-threaded "
                               "DirectRunner; raise it on Dataflow to spread batches over workers.")
        both.add_argument("--write_batch_rows", type=int, default=None,
                          help="Most rows per BigQuery insert. Default: "
                               f"{DIRECT_WRITE_BATCHING.rows} on the DirectRunner, "
                               f"{WriteBatching.rows} (BigQuery's recommendation) elsewhere.")
        both.add_argument("--write_buffer_s", type=float, default=None,
                          help="Longest a row waits for its insert to fill, in seconds. Default: "
                               f"{DIRECT_WRITE_BATCHING.buffer_s} on the DirectRunner, "
                               f"{WriteBatching.buffer_s} elsewhere.")
        delivery.add_argument("--requests_subscription", default=None,
                              help="Subscription id or full path of the requests topic "
                                   "(default: HERALD_REQUESTS_SUBSCRIPTION, else "
                                   "notification-requests-pipeline).")
        delivery.add_argument("--lane", choices=("routine", "urgent"), default="routine",
                              help="Which requests topic the job serves: routine (normal and low "
                                   "priority) or urgent (high priority, its own topic and job; see "
                                   "Settings.urgent_requests_topic).")
        delivery.add_argument("--provider_endpoint", default=None,
                              help="Base URL for FCM, Twilio and SendGrid, e.g. the provider sandbox "
                                   "(default: HERALD_SANDBOX_URL; the real providers when unset).")
        delivery.add_argument("--dedupe_ttl_s", type=int, default=DEFAULT_DEDUPE_TTL_S,
                              help="How long a (notificationId, channel, address) is remembered, "
                                   "in seconds.")
        delivery.add_argument("--dedupe_buckets", type=int, default=None,
                              help="State keys the dedupe keys share; 0 = one per dedupe key. "
                                   f"Default: {DIRECT_DEDUPE_BUCKETS} on the DirectRunner (which "
                                   "scans every key's timers on each pass), 0 elsewhere.")
        callbacks.add_argument("--callbacks_subscription", default=None,
                               help="Subscription id or full path of the callbacks topic "
                                    "(default: HERALD_CALLBACKS_SUBSCRIPTION, else "
                                    "notification-callbacks-pipeline).")


def read_secrets(secrets: Mapping[str, str], project: str) -> dict[str, str]:
    """{variable: secret id or projects/P/secrets/S} -> {variable: the secret's latest value}.
    https://cloud.google.com/secret-manager/docs/access-secret-version"""
    if not secrets:
        return {}
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    values = {}
    for variable, secret in secrets.items():
        name = secret if secret.startswith("projects/") else f"projects/{project}/secrets/{secret}"
        version = client.access_secret_version(name=f"{name}/versions/latest")
        values[variable] = version.payload.data.decode()
    return values


def _environment_flag(flag: str, text: str | None) -> dict[str, str]:
    """A `--settings_env` / `--secret_env` value: a JSON object of strings."""
    value = json.loads(text or "{}")
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ValueError(f"--{flag} must be a JSON object of strings, not {text!r}")
    return value


def resolve_settings(options: PipelineOptions) -> Settings:
    """Settings from, lowest first: the job's own `--project` (a Flex Template launcher has no
    environment), the environment, `--settings_env`, the secrets `--secret_env` names, and
    Herald's flags."""
    herald = options.view_as(HeraldOptions)
    gcp_project = options.view_as(GoogleCloudOptions).project
    env = {**({"GOOGLE_CLOUD_PROJECT": gcp_project} if gcp_project else {}), **os.environ,
           **_environment_flag("settings_env", herald.settings_env)}
    project = herald.herald_project or Settings.from_env(env).project
    secrets = read_secrets(_environment_flag("secret_env", herald.secret_env), project)
    settings = Settings.from_env({**env, **secrets})
    if herald.lane == "urgent":
        settings = settings.urgent_lane()
    overrides = {
        "project": herald.herald_project,
        "requests_subscription": herald.requests_subscription,
        "callbacks_subscription": herald.callbacks_subscription,
        "dataset": herald.dataset,
        "bigquery_endpoint": herald.bigquery_endpoint,
        "fcm_endpoint": herald.provider_endpoint,
        "twilio_endpoint": herald.provider_endpoint,
        "sendgrid_endpoint": herald.provider_endpoint,
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def subscription_path(settings: Settings, subscription: str) -> str:
    """`projects/{project}/subscriptions/{subscription}` for a bare id; a full path as it is."""
    if subscription.startswith("projects/"):
        return subscription
    return settings.subscription_path(subscription)


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
                         default.buffer_s if herald.write_buffer_s is None else herald.write_buffer_s,
                         default.concurrency)
