"""ResolveRecipients: a request becomes its deliveries, using the user's Firestore documents.

Reads are batched (one `get_all` for a batch's users, device listings in parallel). A request whose
sendTime is ahead is held instead (pipelines/schedule.py). Each delivery is planned with the
reason it must not be sent, if any (the user, the category, the channel or the device opted out,
or the category's frequency cap is reached), and one inside the user's quiet hours is deferred
(pipelines/pacing.py); the send step records that outcome once, by the delivery's durable claim.
Deliveries with no address at all (unknown user, no phone/email/device) get their terminal event
here.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from google.api_core import exceptions

from herald import events, users
from herald.clients import state_client
from herald.contracts import Channel, Envelope, Platform
from herald.dead_letters import DeadLetter
from herald.events import Reason, Status
from herald.settings import Settings
from pipelines.delivery import Delivery
from herald.users import switch
from pipelines.directory import Directory
from pipelines.resources import ProcessResource
from pipelines.frequency import FrequencyCaps
from pipelines.pacing import Pacing
from pipelines.schedule import Scheduler, outbox_for

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
LOOKUP_BATCH = 100
TRANSIENT_ERRORS = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                    exceptions.InternalServerError, exceptions.TooManyRequests, exceptions.Aborted,
                    ConnectionError, TimeoutError)
"""Firestore errors that say nothing about the request: the runner retries the bundle."""
log = logging.getLogger("herald.pipeline.recipients")


def _text(value: Any) -> str | None:
    """A contact field (token, phone, email): a non-empty string, else no address."""
    return value if isinstance(value, str) and value.strip() else None


def _platform(value: Any) -> Platform | None:
    """A device's platform; an unknown one sends a plain FCM message, without platform settings."""
    return Platform(value) if value in Platform._value2member_map_ else None


def _opt_out_reason(user: Mapping[str, Any], envelope: Envelope) -> Reason | None:
    """User, then category, then channel (the user's switch, then a provider-reported opt-out):
    the broadest switch that is off is the reason."""
    request = envelope.request
    if switch(user, users.NOTIFICATION_ENABLED) is False:
        return Reason.USER_OPTED_OUT
    if switch(user, users.CATEGORIES, request.category_type) is False:
        return Reason.CATEGORY_OPTED_OUT
    if switch(user, users.CHANNELS, request.channel.value) is False:
        return Reason.CHANNEL_OPTED_OUT
    if users.provider_opt_out(user, request.channel) is not None:
        return Reason.PROVIDER_OPTED_OUT
    return None


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _disabled_for(device: Mapping[str, Any], envelope: Envelope) -> bool:
    """A disabled device is skipped, unless token hygiene disabled it after the request was
    accepted: the request was addressed to a device that was enabled then, so it is planned the
    same whenever it is processed, and a redelivery after a restart (keyed state lost) cannot end
    a delivery a second way (`failed` UNREGISTERED, then `suppressed`)."""
    if switch(device, users.NOTIFICATION_ENABLED) is not False:
        return False
    disabled_at = _text(device.get(users.DISABLED_AT))
    try:
        disabled_later = disabled_at is not None and _instant(disabled_at) >= _instant(envelope.accepted_at)
    except ValueError:  # not Herald's timestamp: the app disabled it
        disabled_later = False
    return not (device.get(users.DISABLED_REASON) and disabled_later)


def plan_deliveries(envelope: Envelope, user_id: str, user: Mapping[str, Any] | None,
                    devices: Mapping[str, Mapping[str, Any]], hash_key: bytes
                    ) -> Iterator[tuple[Delivery, Reason | None]]:
    """Every delivery of a request to one of its users, with the reason it must not be sent
    (None: send it).

    Push fans out to every device (a disabled one is a suppressed delivery, so analysts see it),
    or only to those of the platform `metadata.deviceInfo` names (a user with none of them: one
    `no_address` delivery); SMS and email go to the user's phone or email.
    """
    channel = envelope.request.channel
    target = envelope.request.target_platform
    if user is None:
        yield Delivery(envelope, user_id, channel, None, None), Reason.UNKNOWN_USER
        return
    locale = _text(user.get(users.LOCALE))
    reason = _opt_out_reason(user, envelope)
    if channel is Channel.PUSH:
        if target is not None:
            devices = {device_id: device for device_id, device in devices.items()
                       if _platform(device.get("platform")) is target}
        if not devices:
            yield Delivery(envelope, user_id, channel, None, None), reason or Reason.NO_ADDRESS
        for device_id, device in sorted(devices.items()):
            token = _text(device.get(users.TOKEN))
            delivery = Delivery(envelope, user_id, channel, token,
                                events.recipient_hash(token, hash_key) if token else None,
                                _platform(device.get(users.PLATFORM)), device_id,
                                recipient_locale=locale)
            if reason is None and _disabled_for(device, envelope):
                yield delivery, Reason.DEVICE_DISABLED
            elif reason is None and not token:
                yield delivery, Reason.NO_ADDRESS
            else:
                yield delivery, reason
        return
    address = _text(user.get(users.ADDRESS_FIELDS[channel]))
    delivery = Delivery(envelope, user_id, channel, address,
                        events.recipient_hash(address, hash_key) if address else None,
                        recipient_locale=locale)
    if reason is None and not address:
        reason = Reason.NO_ADDRESS
    yield delivery, reason


_FAILURES = frozenset({Reason.UNKNOWN_USER, Reason.NO_ADDRESS})


class _LookupAndPlan(beam.DoFn):
    """Input: a batch of envelopes. Output: (state key, Delivery) for every delivery with an
    address, its opt-out (if any) in `skip`, so the send step records each outcome once even when
    Pub/Sub redelivers the request after the user's state changed; (tagged) each request's
    `resolved` event with its number of deliveries, and terminal events for deliveries with no
    address at all. Only the deliveries the envelope's scope covers go on (see Scope)."""

    def __init__(self, hash_key: bytes, directory: ProcessResource[Directory],
                 state_key: Callable[[Delivery], str], source_topic: str,
                 scheduler: Scheduler, pacing: Pacing) -> None:
        self._hash_key = hash_key
        self._directory = directory
        self._state_key = state_key
        self._source_topic = source_topic
        self._scheduler = scheduler
        self._pacing = pacing
        self.unprocessable = Metrics.counter("herald", "requests_unprocessable")
        self.planned = Metrics.counter("herald", "deliveries_planned")
        self.undeliverable = Metrics.counter("herald", "deliveries_undeliverable")

    def process(self, batch: list[Envelope]) -> Iterator[Any]:
        """Plans the whole batch with one set of reads; if that fails for anything but a
        transient error (which the runner retries), each request is planned alone, and one that
        still fails is parked (`unprocessable`) so the others, and the pipeline, go on. Outputs
        are collected before any is emitted, so a request is never half planned."""
        try:
            outputs = list(self._plan(batch))
        except TRANSIENT_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - find the request it was, below
            outputs = [output for envelope in batch for output in self._plan_alone(envelope)]
        yield from outputs

    def _plan_alone(self, envelope: Envelope) -> list[Any]:
        try:
            return list(self._plan([envelope]))
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - parked with its error, never raised
            self.unprocessable.inc()
            log.exception("parking request %s: %s", envelope.trace_id, error)
            detail = f"{type(error).__name__}: {error}"
            data, attributes = envelope.to_pubsub()
            return [TaggedOutput(EVENTS, events.request_event(
                        envelope, Status.DEAD_LETTER, reason=Reason.UNPROCESSABLE.value,
                        detail=detail)),
                    TaggedOutput(DEAD_LETTERS, DeadLetter(
                        self._source_topic, Reason.UNPROCESSABLE.value, data, attributes,
                        detail=detail))]

    def _plan(self, batch: list[Envelope]) -> Iterator[Any]:
        now = []
        for envelope in batch:  # a scheduled request is held (or canceled), not planned
            if (event := self._scheduler.triage(envelope)) is None:
                now.append(envelope)
            else:
                yield TaggedOutput(EVENTS, event)
        batch = now
        user_docs, devices = self._directory.get().users_and_devices(
            sorted({u for e in batch for u in e.request.recipient_ids}),
            sorted({u for e in batch if e.request.channel is Channel.PUSH
                    for u in e.request.recipient_ids}))
        now = datetime.now(timezone.utc)
        for envelope in batch:
            planned = [planned for user_id in envelope.request.recipient_ids
                       for planned in plan_deliveries(envelope, user_id, user_docs.get(user_id),
                                                      devices.get(user_id, {}), self._hash_key)]
            yield TaggedOutput(EVENTS, events.request_event(envelope, Status.RESOLVED,
                                                            deliveries=len(planned)))
            for delivery, reason, wait_until in self._pacing.pace(envelope, planned, user_docs, now):
                if not envelope.scope.covers(delivery.span_id):
                    continue  # a republished request: this delivery ended already, or is not replayed
                self.planned.inc()
                if delivery.recipient_hash is None:
                    self.undeliverable.inc()
                    status = Status.FAILED if reason in _FAILURES else Status.SUPPRESSED
                    yield TaggedOutput(EVENTS, delivery.event(status, reason=reason.value))
                elif wait_until is not None:
                    yield TaggedOutput(EVENTS, self._pacing.defer(delivery, wait_until))
                else:
                    yield self._state_key(delivery), dataclasses.replace(delivery, skip=reason)


def _frequency_caps(settings: Settings) -> FrequencyCaps:
    return FrequencyCaps(state_client(settings), settings.frequency_caps)


class ResolveRecipients(beam.PTransform):
    """Envelopes -> (main) (state key, Delivery) pairs for the dedupe step (`state_key`: see
    pipelines.dedupe.Bucketing), (`events`) each request's `resolved` event, the events of
    deliveries with no address (unknown user, no phone/email/device) and of requests held for
    their sendTime or canceled (pipelines/schedule.py), and (`dead_letters`) the
    requests that could not be planned (with their `dead_letter` event in `events`)."""

    def __init__(self, settings: Settings, directory: ProcessResource[Directory],
                 state_key: Callable[[Delivery], str]) -> None:
        super().__init__()
        self._settings = settings
        self._directory = directory
        self._state_key = state_key

    def expand(self, envelopes):
        settings = self._settings
        outbox = ProcessResource(partial(outbox_for, settings))
        caps = ProcessResource(partial(_frequency_caps, settings))
        requests_topic_path = settings.topic_path(settings.requests_topic)  # outbox entries name it
        return (envelopes
                | "BatchLookups" >> beam.BatchElements(min_batch_size=1, max_batch_size=LOOKUP_BATCH)
                | "LookupAndPlan" >> beam.ParDo(
                    _LookupAndPlan(settings.hash_key, self._directory, self._state_key,
                                   settings.requests_topic,
                                   Scheduler(outbox, requests_topic_path),
                                   Pacing(caps, outbox, requests_topic_path))).with_outputs(
                    EVENTS, DEAD_LETTERS, main="deliveries"))
