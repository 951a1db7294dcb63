"""ResolveRecipients: a request becomes its deliveries, using the user's Firestore documents.

Reads are batched (one `get_all` for a batch's users, device listings in parallel). Each delivery
is planned with the reason it must not be sent, if any (the user, the category, the channel or the
device opted out); the dedupe claim records that outcome once. Deliveries with no address at all
(unknown user, no phone/email/device) get their terminal event here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from herald import events
from herald.contracts import Channel, Envelope, Platform
from herald.events import Reason, Status
from herald.settings import Settings
from pipelines.delivery import Delivery
from pipelines.directory import ADDRESS_FIELDS, Directory, provider_opt_out
from pipelines.resources import ProcessResource

EVENTS = "events"
LOOKUP_BATCH = 100


def _opt_out_reason(user: Mapping[str, Any], envelope: Envelope) -> Reason | None:
    """User, then category, then channel (the user's switch, then a provider-reported opt-out):
    the broadest switch that is off is the reason."""
    request = envelope.request
    if user.get("notification_enabled") is False:
        return Reason.USER_OPTED_OUT
    if (user.get("categories") or {}).get(request.category_type) is False:
        return Reason.CATEGORY_OPTED_OUT
    if (user.get("channels") or {}).get(request.channel.value) is False:
        return Reason.CHANNEL_OPTED_OUT
    if provider_opt_out(user, request.channel) is not None:
        return Reason.PROVIDER_OPTED_OUT
    return None


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _disabled_for(device: Mapping[str, Any], envelope: Envelope) -> bool:
    """A disabled device is skipped, unless token hygiene disabled it after the request was
    accepted: the request was addressed to a device that was enabled then, so it is planned the
    same whenever it is processed, and a redelivery after a restart (keyed state lost) cannot end
    a delivery a second way (`failed` UNREGISTERED, then `suppressed`)."""
    if device.get("notification_enabled") is not False:
        return False
    disabled_at = device.get("disabled_at")
    return not (device.get("disabled_reason") and disabled_at
                and _instant(disabled_at) >= _instant(envelope.accepted_at))


def plan_deliveries(envelope: Envelope, user_id: str, user: Mapping[str, Any] | None,
                    devices: Mapping[str, Mapping[str, Any]], hash_key: bytes
                    ) -> Iterator[tuple[Delivery, Reason | None]]:
    """Every delivery of a request to one of its users, with the reason it must not be sent
    (None: send it).

    Push fans out to every device (a disabled one is a suppressed delivery, so analysts see it);
    SMS and email go to the user's phone or email.
    """
    channel = envelope.request.channel
    if user is None:
        yield Delivery(envelope, user_id, channel, None, None), Reason.UNKNOWN_USER
        return
    reason = _opt_out_reason(user, envelope)
    if channel is Channel.PUSH:
        if not devices:
            yield Delivery(envelope, user_id, channel, None, None), reason or Reason.NO_ADDRESS
        for device_id, device in sorted(devices.items()):
            token = device.get("token")
            delivery = Delivery(envelope, user_id, channel, token,
                                events.recipient_hash(token, hash_key) if token else None,
                                Platform(device.get("platform", "android")), device_id)
            if reason is None and _disabled_for(device, envelope):
                yield delivery, Reason.DEVICE_DISABLED
            elif reason is None and not token:
                yield delivery, Reason.NO_ADDRESS
            else:
                yield delivery, reason
        return
    address = user.get(ADDRESS_FIELDS[channel])
    delivery = Delivery(envelope, user_id, channel, address,
                        events.recipient_hash(address, hash_key) if address else None)
    if reason is None and not address:
        reason = Reason.NO_ADDRESS
    yield delivery, reason


_FAILURES = frozenset({Reason.UNKNOWN_USER, Reason.NO_ADDRESS})


class _LookupAndPlan(beam.DoFn):
    """Input: a batch of envelopes. Output: (state key, Delivery) for every delivery with an
    address, its opt-out (if any) in `skip`, so the claim step records each outcome once even when
    Pub/Sub redelivers the request after the user's state changed; (tagged) each request's
    `resolved` event with its number of deliveries, and terminal events for deliveries with no
    address at all. Only the deliveries the envelope's scope covers go on (see Scope)."""

    def __init__(self, hash_key: bytes, directory: ProcessResource[Directory],
                 state_key: Callable[[Delivery], str]) -> None:
        self._hash_key = hash_key
        self._directory = directory
        self._state_key = state_key
        self.planned = Metrics.counter("herald", "deliveries_planned")
        self.undeliverable = Metrics.counter("herald", "deliveries_undeliverable")

    def process(self, batch: list[Envelope]) -> Iterator[Any]:
        users, devices = self._directory.get().users_and_devices(
            sorted({u for e in batch for u in e.request.audience}),
            sorted({u for e in batch if e.request.channel is Channel.PUSH
                    for u in e.request.audience}))
        for envelope in batch:
            planned = [planned for user_id in envelope.request.audience
                       for planned in plan_deliveries(envelope, user_id, users.get(user_id),
                                                      devices.get(user_id, {}), self._hash_key)]
            yield TaggedOutput(EVENTS, events.request_event(envelope, Status.RESOLVED,
                                                            deliveries=len(planned)))
            for delivery, reason in planned:
                if not envelope.scope.covers(delivery.span_id):
                    continue  # a republished request: this delivery ended already, or is not replayed
                self.planned.inc()
                if delivery.recipient_hash is None:
                    self.undeliverable.inc()
                    status = Status.FAILED if reason in _FAILURES else Status.SUPPRESSED
                    yield TaggedOutput(EVENTS, delivery.event(status, reason=reason.value))
                else:
                    yield self._state_key(delivery), dataclasses.replace(delivery, skip=reason)


class ResolveRecipients(beam.PTransform):
    """Envelopes -> (main) (state key, Delivery) pairs for the dedupe step (`state_key`: see
    pipelines.dedupe.Bucketing), (`events`) each request's `resolved` event and the events of
    deliveries with no address (unknown user, no phone/email/device)."""

    def __init__(self, settings: Settings, directory: ProcessResource[Directory],
                 state_key: Callable[[Delivery], str]) -> None:
        super().__init__()
        self._settings = settings
        self._directory = directory
        self._state_key = state_key

    def expand(self, envelopes):
        return (envelopes
                | "BatchLookups" >> beam.BatchElements(min_batch_size=1, max_batch_size=LOOKUP_BATCH)
                | "LookupAndPlan" >> beam.ParDo(
                    _LookupAndPlan(self._settings.hash_key, self._directory,
                                   self._state_key)).with_outputs(
                    EVENTS, main="deliveries"))
