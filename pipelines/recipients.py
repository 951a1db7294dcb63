"""ResolveRecipients: a request becomes its deliveries, using the user's Firestore documents.

Reads are batched (one `get_all` for a batch's users, device listings in parallel), and every
delivery that will not be sent gets its terminal event here, with the reason: the user, the
category, the channel or the device opted out, or there is no user or no address.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from herald import events
from herald.clients import firestore_client
from herald.contracts import Channel, Envelope, Platform
from herald.events import Reason, Status
from herald.settings import Settings
from pipelines.delivery import Delivery
from pipelines.resources import ProcessResource

EVENTS = "events"
LOOKUP_BATCH = 100


def _opt_out_reason(user: Mapping[str, Any], envelope: Envelope) -> Reason | None:
    """User, then category, then channel: the broadest switch that is off is the reason."""
    request = envelope.request
    if user.get("notification_enabled") is False:
        return Reason.USER_OPTED_OUT
    if (user.get("categories") or {}).get(request.category_type) is False:
        return Reason.CATEGORY_OPTED_OUT
    if (user.get("channels") or {}).get(request.channel.value) is False:
        return Reason.CHANNEL_OPTED_OUT
    return None


def plan_deliveries(envelope: Envelope, user: Mapping[str, Any] | None,
                    devices: Mapping[str, Mapping[str, Any]], hash_key: bytes
                    ) -> Iterator[tuple[Delivery, Reason | None]]:
    """Every delivery of a request with the reason it must not be sent (None: send it).

    Push fans out to every device (a disabled one is a suppressed delivery, so analysts see it);
    SMS and email go to the user's phone or email.
    """
    channel = envelope.request.channel
    if user is None:
        yield Delivery(envelope, channel, None, None), Reason.UNKNOWN_USER
        return
    reason = _opt_out_reason(user, envelope)
    if channel is Channel.PUSH:
        if not devices:
            yield Delivery(envelope, channel, None, None), reason or Reason.NO_ADDRESS
        for device_id, device in sorted(devices.items()):
            token = device.get("token")
            delivery = Delivery(envelope, channel, token,
                                events.recipient_hash(token, hash_key) if token else None,
                                Platform(device.get("platform", "android")), device_id)
            if reason is None and device.get("notification_enabled") is False:
                yield delivery, Reason.DEVICE_DISABLED
            elif reason is None and not token:
                yield delivery, Reason.NO_ADDRESS
            else:
                yield delivery, reason
        return
    address = user.get("phone") if channel is Channel.SMS else user.get("email")
    delivery = Delivery(envelope, channel, address,
                        events.recipient_hash(address, hash_key) if address else None)
    if reason is None and not address:
        reason = Reason.NO_ADDRESS
    yield delivery, reason


_FAILURES = frozenset({Reason.UNKNOWN_USER, Reason.NO_ADDRESS})


class _Directory:
    """Firestore reads for a batch: one `get_all` for users, device listings in parallel."""

    def __init__(self, settings: Settings) -> None:
        self._client = firestore_client(settings)
        self._pool = ThreadPoolExecutor(max_workers=16)

    def users(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        refs = [self._client.collection("users").document(u) for u in user_ids]
        return {snap.id: snap.to_dict() for snap in self._client.get_all(refs) if snap.exists}

    def devices(self, user_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        def listing(user_id: str) -> dict[str, dict[str, Any]]:
            collection = self._client.collection("users").document(user_id).collection("devices")
            return {doc.id: doc.to_dict() for doc in collection.stream()}
        return dict(zip(user_ids, self._pool.map(listing, user_ids)))


class _LookupAndPlan(beam.DoFn):
    """Input: a batch of envelopes. Output: sendable (dedupe_key, Delivery) pairs, keyed here for
    the dedupe step, and terminal events (tagged)."""

    def __init__(self, settings: Settings) -> None:
        self._hash_key = settings.hash_key
        self._directory = ProcessResource(partial(_Directory, settings))
        self.planned = Metrics.counter("herald", "deliveries_planned")
        self.suppressed = Metrics.counter("herald", "deliveries_suppressed")
        self.undeliverable = Metrics.counter("herald", "deliveries_undeliverable")

    def process(self, batch: list[Envelope]) -> Iterator[Any]:
        directory = self._directory.get()
        users = directory.users(sorted({e.request.user_id for e in batch}))
        devices = directory.devices(sorted({e.request.user_id for e in batch
                                            if e.request.channel is Channel.PUSH
                                            and e.request.user_id in users}))
        for envelope in batch:
            user_id = envelope.request.user_id
            for delivery, reason in plan_deliveries(envelope, users.get(user_id),
                                                    devices.get(user_id, {}), self._hash_key):
                self.planned.inc()
                if reason is None:
                    yield delivery.dedupe_key, delivery
                elif reason in _FAILURES:
                    self.undeliverable.inc()
                    yield TaggedOutput(EVENTS, delivery.event(Status.FAILED, reason=reason.value))
                else:
                    self.suppressed.inc()
                    yield TaggedOutput(EVENTS, delivery.event(Status.SUPPRESSED, reason=reason.value))


class ResolveRecipients(beam.PTransform):
    """Envelopes -> (main) (dedupe_key, Delivery) pairs to send, (`events`) suppressed and
    undeliverable events."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, envelopes):
        return (envelopes
                | "BatchLookups" >> beam.BatchElements(min_batch_size=1, max_batch_size=LOOKUP_BATCH)
                | "LookupAndPlan" >> beam.ParDo(_LookupAndPlan(self._settings)).with_outputs(
                    EVENTS, main="deliveries"))
