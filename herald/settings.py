"""Runtime settings, read from the environment only.

The same code runs against the local stack and against Google Cloud: the emulator variables
(`PUBSUB_EMULATOR_HOST`, `FIRESTORE_EMULATOR_HOST`) are read by Google's clients themselves; the
rest is here, with production defaults where one exists.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

from herald.contracts import MAX_AUDIENCE, PROVIDER_BY_CHANNEL, Priority
from herald.providers.fcm.labels import DEFAULT_BUCKETS, AnalyticsLabels
from herald.receipts import ReceiptKey

DEFAULT_LOCAL_API_KEY = "local-dev-key"
DEFAULT_LOCAL_CLIENT = "local-dev"


def parse_api_keys(spec: str) -> dict[str, str]:
    """`key:client,key2:client2` -> {key: client}; the client id is the sender's identity."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, client = item.partition(":")
        if not sep or not key or not client:
            raise ValueError(f"HERALD_API_KEYS entry {item!r} is not key:client")
        keys[key] = client
    return keys


def parse_frequency_caps(spec: str) -> dict[str, int]:
    """`marketing:3,news:5` -> {category: most notifications per user per day}."""
    caps: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        category, sep, cap = item.partition(":")
        if not sep or not category or not cap.isdigit():
            raise ValueError(f"HERALD_FREQUENCY_CAPS entry {item!r} is not category:count")
        caps[category] = int(cap)
    return caps


def parse_page_size(spec: str) -> int:
    """HERALD_AUDIENCE_PAGE_SIZE: 1 to MAX_AUDIENCE users per audience page."""
    if not spec.isdigit() or not 1 <= int(spec) <= MAX_AUDIENCE:
        raise ValueError(f"HERALD_AUDIENCE_PAGE_SIZE must be 1 to {MAX_AUDIENCE}, got {spec!r}")
    return int(spec)


_PROVIDER_SECRETS = {
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "twilio_from_number": "TWILIO_FROM_NUMBER",
    "sendgrid_api_key": "SENDGRID_API_KEY",
    "sendgrid_from_email": "SENDGRID_FROM_EMAIL",
}
"""Provider credentials: Secret Manager injects these in production; the defaults fit the sandbox."""


@dataclass(frozen=True)
class Settings:
    """Everything a Herald process needs to find its topics, tables and providers."""

    project: str
    dataset: str = "herald"
    requests_topic: str = "notification-requests"
    requests_subscription: str = "notification-requests-pipeline"
    audit_subscription: str = "notification-requests-audit"
    """A second subscription on the requests topic, kept until `herald reconcile` has seen each
    request finish: what proves (or restores) that no accepted request is lost."""
    urgent_requests_topic: str = "notification-requests-urgent"
    """High-priority requests' own topic: the edge publishes them there, and a pipeline of their
    own reads it (`--lane urgent`; on Dataflow a job of its own), so a routine backlog never sits
    in front of urgent work on the way from the queue to the provider."""
    urgent_requests_subscription: str = "notification-requests-urgent-pipeline"
    urgent_audit_subscription: str = "notification-requests-urgent-audit"
    dead_letter_topic: str = "notification-dead-letter"
    callbacks_topic: str = "notification-callbacks"
    """Where the ingest function publishes verified provider delivery callbacks."""
    callbacks_subscription: str = "notification-callbacks-pipeline"
    bigquery_endpoint: str | None = None
    api_keys: Mapping[str, str] = field(default_factory=dict)
    hash_key: bytes = b"herald-local-hash-key"
    fcm_endpoint: str | None = None
    twilio_endpoint: str | None = None
    sendgrid_endpoint: str | None = None
    callback_base_url: str | None = None
    sendgrid_webhook_public_key: str | None = None
    """Verifies SendGrid's signed Event Webhook: base64 DER, as SendGrid's dashboard shows it."""
    twilio_webhook_shared_key: str | None = None
    """The SharedKey secret Twilio signs webhooks with when a Webhook Rule names one (the request
    then carries X-Twilio-Webhooks-Signature-Settings); without one, the Auth Token signs them."""
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "local-twilio-token"
    twilio_from_number: str = "+15550000000"
    sendgrid_api_key: str = "SG.local-sendgrid-key"
    sendgrid_from_email: str = "notifications@herald.local"
    publish_timeout_s: float = 10.0
    """How long the edge waits for Pub/Sub before it stores the request in the outbox instead."""
    publish_slow_s: float = 1.0
    """A publish not acknowledged within this counts as failed for the edge's circuit breaker
    (`ingest_function/breaker.py`); Pub/Sub's publish latency is normally tens of milliseconds."""
    breaker_failures: int = 3
    """Consecutive failed or slow publishes after which the edge stops waiting for Pub/Sub and
    writes requests straight to the outbox, until a background probe publishes again."""
    breaker_probe_s: float = 1.0
    """While the breaker is open, the pause between probes of Pub/Sub."""
    outbox_poll_s: float = 2.0
    """The `replay_outbox` function's pause between passes over the outbox."""
    outbox_poll_window_s: float = 50.0
    """How long one `replay_outbox` call keeps polling: Cloud Scheduler calls it at most once a
    minute, and a scheduled send must reach its provider within 10 s of its sendTime. 0: one
    pass."""
    firestore_timeout_s: float = 5.0
    """How long the edge waits on one Firestore call (idempotency record, outbox entry)."""
    provider_wait_s: float = 60.0
    """How long a delivery waits when its provider said "too many requests" without saying how
    long (a Twilio 20429; FCM's QUOTA_EXCEEDED has its documented minute)."""
    provider_max_per_s: Mapping[str, float] = field(default_factory=dict)
    """Per provider ("fcm", "twilio", "sendgrid"), the most requests per second one process
    sends (`HERALD_<PROVIDER>_MAX_PER_S`); unset is no limit. E.g. 1 for Twilio's one message per
    second per long code (herald.providers.twilio.limits.DEFAULT_LONG_CODE_MPS)."""
    fcm_analytics_labels: AnalyticsLabels = AnalyticsLabels()
    """How pushes are labelled for FCM's reports (herald/providers/fcm/labels.py): the
    `category.template` pairs or categories in HERALD_FCM_ANALYTICS_LABELS get their own label,
    the rest one of HERALD_FCM_LABEL_BUCKETS hash labels, 100 at most in all (FCM's daily limit)."""
    receipt_key: bytes = b"herald-local-receipt-key"
    """Signs the receipt token every push carries (herald/receipts.py): a secret, from Secret
    Manager in production (HERALD_RECEIPT_KEY)."""
    receipt_ttl_s: int = 28 * 24 * 3600
    """How long an app may post a push's receipt: FCM's default time to live, four weeks."""
    status_ttl_s: int = 30 * 24 * 3600
    """How long the status API can answer about a request (herald/status.py): each status
    document's expires_at, for Firestore's TTL policy (HERALD_STATUS_TTL_S)."""
    fcm_export_project: str | None = None
    fcm_export_dataset: str = "firebase_messaging"
    fcm_export_table: str = "data"
    """Where FCM's BigQuery export of message delivery data is (herald/providers/fcm/export.py):
    the Firebase project (default: `project`), dataset and table; dbt reads the same variables."""
    frequency_caps: Mapping[str, int] = field(default_factory=dict)
    """Per category, the most notifications of it a user gets per (local) day
    (`HERALD_FREQUENCY_CAPS=marketing:3,news:5`); over it, `suppressed` with reason
    `frequency_capped`. High priority is never capped; unset: no caps."""
    audience_page_size: int = MAX_AUDIENCE
    """How many users the pipeline reads per page of an audience send (`audience`), each page one
    Pub/Sub message and one bulk batch (HERALD_AUDIENCE_PAGE_SIZE, 1 to MAX_AUDIENCE: a page of
    email is one SendGrid request)."""
    state_database: str = "herald-state"
    """The Firestore database of Herald's own state (idempotency records, outbox, send claims),
    apart from the users and devices in `(default)`: the app owns those and Herald only reads them
    (and disables dead tokens), while its own state is written on every request, expires by TTL
    and would otherwise grow the database the pipeline queries for devices (in the emulator,
    40,000 such records made each device listing 2.5 times slower)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        sandbox = env.get("HERALD_SANDBOX_URL")
        return cls(
            project=env.get("HERALD_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or "herald-local",
            dataset=env.get("HERALD_DATASET", "herald"),
            requests_topic=env.get("HERALD_REQUESTS_TOPIC", "notification-requests"),
            requests_subscription=env.get("HERALD_REQUESTS_SUBSCRIPTION",
                                          "notification-requests-pipeline"),
            audit_subscription=env.get("HERALD_AUDIT_SUBSCRIPTION", "notification-requests-audit"),
            urgent_requests_topic=env.get("HERALD_URGENT_REQUESTS_TOPIC",
                                          "notification-requests-urgent"),
            urgent_requests_subscription=env.get("HERALD_URGENT_REQUESTS_SUBSCRIPTION",
                                                 "notification-requests-urgent-pipeline"),
            urgent_audit_subscription=env.get("HERALD_URGENT_AUDIT_SUBSCRIPTION",
                                              "notification-requests-urgent-audit"),
            dead_letter_topic=env.get("HERALD_DEAD_LETTER_TOPIC", "notification-dead-letter"),
            callbacks_topic=env.get("HERALD_CALLBACKS_TOPIC", "notification-callbacks"),
            callbacks_subscription=env.get("HERALD_CALLBACKS_SUBSCRIPTION",
                                           "notification-callbacks-pipeline"),
            sendgrid_webhook_public_key=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
            twilio_webhook_shared_key=env.get("TWILIO_WEBHOOK_SHARED_KEY") or None,
            bigquery_endpoint=env.get("BIGQUERY_API_ENDPOINT") or None,
            api_keys=parse_api_keys(env.get("HERALD_API_KEYS", "")),
            hash_key=env.get("HERALD_HASH_KEY", "herald-local-hash-key").encode(),
            fcm_endpoint=env.get("HERALD_FCM_ENDPOINT") or sandbox,
            twilio_endpoint=env.get("HERALD_TWILIO_ENDPOINT") or sandbox,
            sendgrid_endpoint=env.get("HERALD_SENDGRID_ENDPOINT") or sandbox,
            callback_base_url=env.get("HERALD_CALLBACK_BASE_URL") or env.get("HERALD_API_URL"),
            publish_timeout_s=float(env.get("HERALD_PUBLISH_TIMEOUT_S", "10")),
            publish_slow_s=float(env.get("HERALD_PUBLISH_SLOW_S", "1")),
            breaker_failures=int(env.get("HERALD_BREAKER_FAILURES", "3")),
            breaker_probe_s=float(env.get("HERALD_BREAKER_PROBE_S", "1")),
            firestore_timeout_s=float(env.get("HERALD_FIRESTORE_TIMEOUT_S", "5")),
            outbox_poll_s=float(env.get("HERALD_OUTBOX_POLL_S", "2")),
            outbox_poll_window_s=float(env.get("HERALD_OUTBOX_POLL_WINDOW_S", "50")),
            state_database=env.get("HERALD_STATE_DATABASE", "herald-state"),
            receipt_key=env.get("HERALD_RECEIPT_KEY", "herald-local-receipt-key").encode(),
            receipt_ttl_s=int(env.get("HERALD_RECEIPT_TTL_S", str(28 * 24 * 3600))),
            status_ttl_s=int(env.get("HERALD_STATUS_TTL_S", str(30 * 24 * 3600))),
            fcm_export_project=env.get("HERALD_FCM_EXPORT_PROJECT") or None,
            fcm_export_dataset=env.get("HERALD_FCM_EXPORT_DATASET", "firebase_messaging"),
            fcm_export_table=env.get("HERALD_FCM_EXPORT_TABLE", "data"),
            fcm_analytics_labels=AnalyticsLabels.parse(
                env.get("HERALD_FCM_ANALYTICS_LABELS", ""),
                int(env.get("HERALD_FCM_LABEL_BUCKETS", str(DEFAULT_BUCKETS)))),
            frequency_caps=parse_frequency_caps(env.get("HERALD_FREQUENCY_CAPS", "")),
            audience_page_size=parse_page_size(env.get("HERALD_AUDIENCE_PAGE_SIZE",
                                                       str(MAX_AUDIENCE))),
            provider_wait_s=float(env.get("HERALD_PROVIDER_WAIT_S", "60")),
            provider_max_per_s={provider: float(env[variable]) for provider in PROVIDER_BY_CHANNEL.values()
                                if env.get(variable := f"HERALD_{provider.upper()}_MAX_PER_S")},
            **{name: env[variable] for name, variable in _PROVIDER_SECRETS.items() if env.get(variable)},
        )

    def requests_topic_for(self, priority: Priority) -> str:
        """The topic a request of `priority` is published to: high has its own."""
        return self.urgent_requests_topic if priority is Priority.HIGH else self.requests_topic

    def urgent_lane(self) -> Settings:
        """These settings as the urgent lane's processes use them: its topic is *the* requests
        topic of its pipeline and reconciler (what they read, republish to and defer to)."""
        return dataclasses.replace(self, requests_topic=self.urgent_requests_topic,
                                   requests_subscription=self.urgent_requests_subscription,
                                   audit_subscription=self.urgent_audit_subscription)

    def lanes(self) -> tuple[Settings, Settings]:
        """The routine lane's settings (these) and the urgent lane's."""
        return self, self.urgent_lane()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def table(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"

    @property
    def events_table(self) -> str:
        return self.table("events")

    @property
    def receipts(self) -> ReceiptKey:
        """The receipt key pushes are signed and receipts verified with."""
        return ReceiptKey(self.receipt_key, self.receipt_ttl_s)

    @property
    def fcm_export_table_id(self) -> str:
        """`project.dataset.table` of FCM's BigQuery export."""
        return (f"{self.fcm_export_project or self.project}.{self.fcm_export_dataset}."
                f"{self.fcm_export_table}")
