"""The status store: what happened to each delivery of a sender's request, for `GET
/v1/notifications/{notificationId}` (ingest_function/status.py) to answer in milliseconds.

Not a BigQuery query per call (BigQuery bills and takes seconds per query): Firestore, in Herald's
own database (Settings.state_database), written by the pipelines in batches:
- `notification_status/{request_key(sender, notificationId)}`, one document per request, written
  by the delivery pipeline: the request's accepted_at and, per delivery (span id), its channel,
  platform, reason, provider code and the time of each stage Herald itself recorded (its terminal
  event: sent, failed, suppressed, duplicate, dead_letter; deferred);
- `delivery_stages/{span id}`, written by the callbacks pipeline: the time of each stage a
  provider or the app reported later (provider_accepted, delivered, opened, bounced, ...); and
  by `FcmExportSync`, a scheduled job, for the pushes FCM's BigQuery export reports
  delivered (FCM calls nobody back, so no pipeline sees those: one BigQuery query a run, never
  one per API call).
  Callbacks name their delivery by span id only, never its sender, so they are written where they
  can be addressed blind, without a read; the lookup reads the request's document and its
  deliveries' stage documents in one batched get.
Every document has `expires_at` (now + Settings.status_ttl_s when written): give both collections
a Firestore TTL policy on `expires_at` and they are deleted after the retention the operator set.
Writes merge (set with merge), so events may arrive in any order and a repeated one rewrites the
same field.

A delivery's current status is its highest-ranked stage by the precedence the marts use
(herald.events.FINAL_STATUS_PRECEDENCE, dbt's final_status_precedence), so the API and the marts
agree.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from google.cloud import firestore

from herald import batch_writes
from herald.events import CALLBACK, FINAL_STATUS_PRECEDENCE, TERMINAL, Status
from herald.providers.fcm import export

if TYPE_CHECKING:  # the Cloud Function imports this module and does not ship BigQuery's client
    from google.cloud import bigquery

REQUESTS_COLLECTION = "notification_status"
STAGES_COLLECTION = "delivery_stages"
HERALD_STAGES = TERMINAL | {Status.DEFERRED}
"""The delivery stages the delivery pipeline records (a deferred send's wait included)."""


def request_key(sender: str, notification_id: str) -> str:
    """The request document's id: a hash, so any notificationId is a valid document id and no
    sender's id can be read as another's."""
    return hashlib.sha256(json.dumps([sender, notification_id]).encode()).hexdigest()


def current_status(stages: Mapping[str, Any]) -> str | None:
    """The status the stages add up to: the highest-ranked one's meaning (an open stands for
    delivered), else the latest stage (dead_letter, deferred)."""
    ranked = [FINAL_STATUS_PRECEDENCE[stage] for stage in stages
              if stage in FINAL_STATUS_PRECEDENCE]
    if ranked:
        return str(max(ranked)[1])
    return max(stages, key=lambda stage: stages[stage], default=None)


class StatusStore:
    """Reads and batched writes of the status documents; `ttl` sets each write's expires_at."""

    def __init__(self, db: firestore.Client, ttl: timedelta) -> None:
        self._db = db
        self._ttl = ttl

    def record(self, events: Iterable[Mapping[str, Any]]) -> tuple[int, list[Any]]:
        """Merge a batch of event rows into their documents, one write per document, in
        BatchWrite calls of up to 500; events about no delivery are skipped. Returns how many
        documents were written and the google.rpc Status of each write Firestore refused (such as
        a request document over Firestore's 1 MiB: a bulk request of thousands of deliveries)."""
        requests: dict[str, dict[str, Any]] = defaultdict(dict)
        stages: dict[str, dict[str, Any]] = defaultdict(dict)
        expires_at = datetime.now(timezone.utc) + self._ttl
        for event in events:
            status, span = event.get("status"), event.get("span_id")
            at = _timestamp(event.get("event_ts"))
            if status in HERALD_STAGES and event.get("parent_span_id") and event.get(
                    "sender_client") and event.get("notification_id"):
                document = requests[request_key(event["sender_client"], event["notification_id"])]
                document.update(sender=event["sender_client"],
                                notification_id=event["notification_id"],
                                accepted_at=_timestamp(event.get("accepted_at")),
                                expires_at=expires_at)
                delivery = document.setdefault("deliveries", {}).setdefault(span, {"stages": {}})
                delivery.update({key: event.get(key) for key in (
                    "channel", "platform", "provider") if event.get(key)})
                if status != Status.DEFERRED:
                    delivery.update(reason=event.get("reason"),
                                    provider_code=event.get("provider_code"))
                delivery["stages"][status] = at
            elif status in CALLBACK and span:
                document = stages[span]
                document.setdefault("stages", {})[_callback_stage(event)] = at
                document["expires_at"] = expires_at
        writes = [batch_writes.set_merge(self._db.collection(collection).document(key), data)
                  for collection, documents in ((REQUESTS_COLLECTION, requests),
                                                (STAGES_COLLECTION, stages))
                  for key, data in documents.items()]
        answers = batch_writes.write_each(self._db, writes)
        refused = [status for status, _ in answers if status.code != 0]
        return len(answers) - len(refused), refused

    def lookup(self, sender: str, notification_id: str) -> dict[str, Any] | None:
        """The request's deliveries as the API shows them, or None when this sender made no such
        request (or it has expired)."""
        snapshot = self._db.collection(REQUESTS_COLLECTION).document(
            request_key(sender, notification_id)).get()
        if not snapshot.exists:
            return None
        document = snapshot.to_dict()
        deliveries = document.get("deliveries", {})
        refs = [self._db.collection(STAGES_COLLECTION).document(span) for span in deliveries]
        reported = {stage.id: stage.to_dict().get("stages", {})
                    for stage in self._db.get_all(refs) if stage.exists} if refs else {}
        return {
            "notificationId": notification_id,
            "acceptedAt": _iso(document.get("accepted_at")),
            "deliveries": [_delivery(span, delivery, reported.get(span, {}))
                           for span, delivery in sorted(deliveries.items())],
        }


def _delivery(span: str, delivery: Mapping[str, Any], reported: Mapping[str, Any]
              ) -> dict[str, Any]:
    stages = {**delivery.get("stages", {}), **reported}
    return {
        "deliveryId": span,
        "channel": delivery.get("channel"),
        "platform": delivery.get("platform"),
        "status": current_status(stages),
        "reason": delivery.get("reason"),
        "providerCode": delivery.get("provider_code"),
        "timeline": [{"stage": stage, "at": _iso(at)}
                     for stage, at in sorted(stages.items(), key=lambda item: (item[1], item[0]))],
    }


def _callback_stage(event: Mapping[str, Any]) -> str:
    """A callback's stage; a privacy proxy's open is a stage of its own, as in the events."""
    return "machine_opened" if event.get("machine_open") else event["status"]


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


class FcmExportSync:
    """One run: the pushes FCM's BigQuery export (herald/providers/fcm/export.py) reported
    delivered in the rows loaded since the start of the UTC day `lookback` ago (the table's
    ingestion-time partitions: a row loaded late is still read), about pushes sent in that window
    or up to `export.LOAD_DELAY` before it, matched to their sent events by FCM's message id as
    dbt's int_deliveries does (rows naming more than one app instance are not attributed), merged
    into their stage documents as `delivered`. Re-reading the whole window each run is idempotent
    (the same stage is rewritten)."""

    def __init__(self, client: bigquery.Client, store: StatusStore, events_table: str,
                 export_table: str, lookback: timedelta) -> None:
        self._client = client
        self._store = store
        self._lookback = lookback
        self._sql = f"""
            select sent.span_id,
                min(if(fcm.event = '{export.ExportEvent.MESSAGE_DELIVERED}', fcm.event_timestamp,
                       null)) as delivered_at
            from (
                select * from `{export_table}`
                where {export.PARTITION_PSEUDO_COLUMN} >= timestamp_trunc(@since, day)
            ) as fcm
            join `{events_table}` as sent
                on fcm.message_id = substr(sent.provider_message_id,
                                           strpos(sent.provider_message_id, '/messages/') + 10)
            where fcm.event in ('{export.ExportEvent.MESSAGE_ACCEPTED}',
                                '{export.ExportEvent.MESSAGE_DELIVERED}')
                and sent.status = 'sent'
                and sent.provider = 'fcm'
                and sent.event_ts >= timestamp_sub(@since,
                                                   interval {export.LOAD_DELAY.days} day)
            group by sent.span_id
            having countif(fcm.event = '{export.ExportEvent.MESSAGE_DELIVERED}') > 0
                and count(distinct fcm.instance_id) <= 1"""

    def run(self) -> str:
        from google.cloud import bigquery

        since = datetime.now(timezone.utc) - self._lookback
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since)])
        rows = self._client.query(self._sql, job_config=config).result()
        stages = [{"status": Status.DELIVERED.value, "span_id": row["span_id"],
                   "event_ts": _iso(row["delivered_at"])} for row in rows]
        _, refused = self._store.record(stages)
        if refused:
            raise RuntimeError(f"Firestore refused {len(refused)} stage writes: {refused[0]}")
        return f"{len(stages)} pushes FCM's export reports delivered since {_iso(since)}"
