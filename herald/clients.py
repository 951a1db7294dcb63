"""Google client construction in one place, so an endpoint setting reaches every caller.

Pub/Sub and Firestore clients find their emulators through `PUBSUB_EMULATOR_HOST` /
`FIRESTORE_EMULATOR_HOST` on their own; BigQuery has no such variable, so its endpoint is a setting.
"""

from __future__ import annotations

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, firestore

from herald.settings import Settings


def bigquery_client(settings: Settings) -> bigquery.Client:
    """A client for production BigQuery, or for the emulator when an endpoint is configured."""
    if settings.bigquery_endpoint:
        return bigquery.Client(project=settings.project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": settings.bigquery_endpoint})
    return bigquery.Client(project=settings.project)


def firestore_client(settings: Settings) -> firestore.Client:
    """The users and devices: the settings' project's `(default)` Firestore database (the
    emulator when FIRESTORE_EMULATOR_HOST is set)."""
    return firestore.Client(project=settings.project)


def state_client(settings: Settings) -> firestore.Client:
    """Herald's own state: idempotency records, outbox entries, send claims (Settings.state_database)."""
    return firestore.Client(project=settings.project, database=settings.state_database)
