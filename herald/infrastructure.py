"""What terraform needs from the code: resource names, table schemas, TTL fields, indexes, env names.

`terraform/` creates what the code uses, so it must use the code's names. It does not repeat them:
`herald schema --write` writes them here into `terraform/generated/` (`render_files`), and the root
module reads those files with `jsondecode(file(...))`:

- `names.json`: Pub/Sub topics and subscriptions (with the ack deadline the local stack provisions),
  the BigQuery dataset and tables (partitioning, clustering, schema file), the Firestore state
  database with its TTL fields and composite indexes, the function's entry points, concurrency and
  environment, and which Secret Manager secret fills which environment variable.
- `bigquery/<table>.json`: each table's schema in BigQuery's JSON schema format (the
  `google_bigquery_table.schema` argument; https://cloud.google.com/bigquery/docs/schemas#specifying_a_json_schema_file).

The names are `Settings.from_env({})`: what every Herald process reads when no `HERALD_*` variable
overrides it. `tests/terraform_test.py` fails while the committed files differ from `render_files()`
and while the HCL uses a name these files do not give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from herald import dead_letters, events
from herald.events import Field
from herald.settings import Settings

TERRAFORM_DIR = Path(__file__).resolve().parents[1] / "terraform"
GENERATED_DIR = TERRAFORM_DIR / "generated"

TTL_FIELD = "expires_at"
"""The timestamp field a Firestore TTL policy deletes documents by, in every collection that has one
(https://cloud.google.com/firestore/docs/ttl)."""

RESOURCE_VARIABLES: Mapping[str, str] = {
    "HERALD_DATASET": "dataset",
    "HERALD_REQUESTS_TOPIC": "requests_topic",
    "HERALD_REQUESTS_SUBSCRIPTION": "requests_subscription",
    "HERALD_AUDIT_SUBSCRIPTION": "audit_subscription",
    "HERALD_DEAD_LETTER_TOPIC": "dead_letter_topic",
    "HERALD_CALLBACKS_TOPIC": "callbacks_topic",
    "HERALD_CALLBACKS_SUBSCRIPTION": "callbacks_subscription",
    "HERALD_STATE_DATABASE": "state_database",
}
"""Environment variable -> the `Settings` field it sets (`Settings.from_env`), for the names
terraform creates; the deployed function gets each with the name terraform used."""

SECRET_VARIABLES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "HERALD_API_KEYS": ("herald-api-keys", ("function",)),
    "TWILIO_AUTH_TOKEN": ("herald-twilio-auth-token", ("function", "pipelines")),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": ("herald-sendgrid-webhook-public-key", ("function",)),
    "HERALD_HASH_KEY": ("herald-hash-key", ("pipelines",)),
    "TWILIO_ACCOUNT_SID": ("herald-twilio-account-sid", ("pipelines",)),
    "SENDGRID_API_KEY": ("herald-sendgrid-api-key", ("pipelines",)),
}
"""Environment variable `Settings.from_env` reads -> (the Secret Manager secret id that fills it,
who reads it): the ingest function authenticates senders (API keys, `key:client,...`) and verifies
Twilio's and SendGrid's signed callbacks; the pipelines hash recipients and call the providers."""

ENTRY_POINTS: Mapping[str, str] = {
    "ingest": "notifications",
    "replay_outbox": "replay_outbox",
    "reconcile": "reconcile",
}
"""Cloud Function -> its entry point in `ingest_function/main.py`."""


def _ttl_collections() -> dict[str, str]:
    """Collection -> TTL field, for the state database's collections that expire."""
    from herald import status
    from ingest_function import idempotency, outbox
    from pipelines import audiences, claims, frequency

    return {collection: TTL_FIELD for collection in (
        idempotency.COLLECTION, outbox.COLLECTION, claims.COLLECTION, frequency.COLLECTION,
        status.REQUESTS_COLLECTION, status.STAGES_COLLECTION, audiences.COLLECTION)}


def _composite_indexes() -> list[dict[str, Any]]:
    """The composite indexes the state database's queries need: an equality filter on one field
    with an order on another needs one
    (https://cloud.google.com/firestore/docs/query-data/index-overview). The outbox replay's
    `state == "pending"` ordered by `accepted_at` is the only such query; a test reads the fields
    from the query `Outbox.replay` sends."""
    from ingest_function import outbox

    return [{"collection": outbox.COLLECTION, "fields": [
        {"field_path": "state", "order": "ASCENDING"},
        {"field_path": "accepted_at", "order": "ASCENDING"}]}]


def _function_concurrency() -> int:
    from herald.local.stack import FUNCTION_THREADS

    return FUNCTION_THREADS


def schema_json(fields: tuple[Field, ...]) -> list[dict[str, str]]:
    """BigQuery's JSON schema: [{"name", "type", "mode", "description"}] in column order."""
    return [{"name": f.name, "type": f.type, "mode": f.mode, "description": f.description}
            for f in fields]


TABLES: Mapping[str, tuple[tuple[Field, ...], str, tuple[str, ...], str]] = {
    events.EVENTS_TABLE: (events.EVENT_FIELDS, events.PARTITION_FIELD, events.CLUSTER_FIELDS,
                          "Every stage of every Herald request and delivery (herald.events)."),
    dead_letters.DEAD_LETTERS_TABLE: (
        dead_letters.DEAD_LETTER_FIELDS, dead_letters.PARTITION_FIELD, (),
        "What the pipelines parked, whole, for `herald dlq replay` (herald.dead_letters)."),
}
"""Table -> (fields, day-partitioning column, clustering columns, description)."""


def names() -> dict[str, Any]:
    """The content of `terraform/generated/names.json` (see the module docstring)."""
    from herald.local.provision import ACK_DEADLINE_S

    settings = Settings.from_env({})
    subscriptions = {
        "requests_pipeline": (settings.requests_subscription, "requests"),
        "requests_audit": (settings.audit_subscription, "requests"),
        "callbacks_pipeline": (settings.callbacks_subscription, "callbacks"),
        "dead_letter_hold": (settings.dead_letter_topic + dead_letters.HOLD_SUFFIX, "dead_letter"),
    }
    return {
        "pubsub": {
            "topics": {"requests": settings.requests_topic, "callbacks": settings.callbacks_topic,
                       "dead_letter": settings.dead_letter_topic},
            "subscriptions": {key: {"name": name, "topic": topic} for key, (name, topic)
                              in subscriptions.items()},
            "ack_deadline_seconds": ACK_DEADLINE_S,
        },
        "bigquery": {
            "dataset": settings.dataset,
            "tables": {table: {"schema_file": f"bigquery/{table}.json",
                               "partition_field": partition, "partition_type": "DAY",
                               "clustering": list(clustering), "description": description}
                       for table, (_, partition, clustering, description) in TABLES.items()},
        },
        "firestore": {
            "state_database": settings.state_database,
            "ttl": _ttl_collections(),
            "indexes": _composite_indexes(),
        },
        "function": {
            "entry_points": dict(ENTRY_POINTS),
            "max_instance_request_concurrency": _function_concurrency(),
            "environment": {variable: getattr(settings, field)
                            for variable, field in RESOURCE_VARIABLES.items()},
        },
        "secrets": {variable: {"secret_id": secret_id, "readers": list(readers)}
                    for variable, (secret_id, readers) in SECRET_VARIABLES.items()},
    }


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def render_files() -> dict[Path, str]:
    """Path under `GENERATED_DIR` -> the text it must hold for the current code."""
    files = {Path("names.json"): _dump(names())}
    for table, (fields, *_) in TABLES.items():
        files[Path("bigquery") / f"{table}.json"] = _dump(schema_json(fields))
    return files


def write_files(directory: Path = GENERATED_DIR) -> list[Path]:
    """Write `render_files()` under `directory`; returns the paths written."""
    written = []
    for relative, text in render_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
