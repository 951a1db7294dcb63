"""Create what the local stack's services need: topics, subscriptions, the BigQuery dataset and tables.

The same functions provision a test's private stack; terraform owns these resources in production.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import bigquery, pubsub_v1

from herald import dead_letters, events
from herald.providers.fcm import export as fcm_export
from herald.clients import bigquery_client
from herald.settings import Settings

ACK_DEADLINE_S = 60


def create_topics(settings: Settings) -> None:
    """Requests topics (routine and urgent) and the callbacks topic with the pipelines'
    subscriptions (and each requests topic's audit subscription for `herald reconcile`), and the dead-letter topic with a subscription so dead
    letters are kept for replay rather than dropped by Pub/Sub."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        pairs = [
            *((lane.requests_topic, subscription) for lane in settings.lanes()
              for subscription in (lane.requests_subscription, lane.audit_subscription)),
            (settings.callbacks_topic, settings.callbacks_subscription),
            (settings.dead_letter_topic, settings.dead_letter_topic + dead_letters.HOLD_SUFFIX),
        ]
        for topic, subscription in pairs:
            topic_path = settings.topic_path(topic)
            try:
                publisher.create_topic(name=topic_path)
            except exceptions.AlreadyExists:
                pass
            try:
                subscriber.create_subscription(
                    name=settings.subscription_path(subscription), topic=topic_path,
                    ack_deadline_seconds=ACK_DEADLINE_S)
            except exceptions.AlreadyExists:
                pass
    finally:
        subscriber.close()


def create_tables(settings: Settings) -> None:
    """Dataset, the day-partitioned, channel/status-clustered events table and the day-partitioned
    dead-letters table; and, standing in for FCM (which creates it in production when its
    BigQuery export is turned on), the FCM export's dataset and ingestion-time partitioned table,
    which the sandbox fills."""
    client = bigquery_client(settings)
    client.create_dataset(bigquery.Dataset(f"{settings.project}.{settings.dataset}"), exists_ok=True)
    table = bigquery.Table(settings.events_table, schema=events.bigquery_schema())
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=events.PARTITION_FIELD)
    table.clustering_fields = list(events.CLUSTER_FIELDS)
    table.description = "Every stage of every Herald request and delivery (herald.events)."
    client.create_table(table, exists_ok=True)
    parked = bigquery.Table(settings.table(dead_letters.DEAD_LETTERS_TABLE),
                            schema=dead_letters.bigquery_schema())
    parked.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=dead_letters.PARTITION_FIELD)
    parked.description = "What the pipelines parked, whole, for `herald dlq replay` (herald.dead_letters)."
    client.create_table(parked, exists_ok=True)
    export_project, export_dataset, _ = settings.fcm_export_table_id.split(".")
    client.create_dataset(bigquery.Dataset(f"{export_project}.{export_dataset}"), exists_ok=True)
    exported = bigquery.Table(settings.fcm_export_table_id, schema=fcm_export.bigquery_schema())
    # Ingestion-time partitioned, as FCM's table is: no field (herald.providers.fcm.export).
    exported.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY)
    exported.description = "FCM's message delivery data export (herald.providers.fcm.export)."
    client.create_table(exported, exists_ok=True)
