"""ExpandAudiences: an audience send (`audience: {topic | segment}`) becomes bulk pages, one
Pub/Sub message per page.

A message about page n of an audience (the edge's message is page 1) is handled by reading that
one page from Firestore (`herald.users.audience_page`: at most `Settings.audience_page_size` users
after the page's cursor, in document id order), and then:

1. if the page was full, publishing page n+1's message (same request bytes and trace, the last
   user id read as its cursor) to the requests topic, and waiting for Pub/Sub to take it;
2. emitting the page's `audience` event (`page`, `page_users`, `audience_size` so far) and, on the
   last page (one that was not full), `audience_complete` (`page` = pages, `audience_size`);
3. passing the page on as a bulk request of the page's users (the existing path: lookups,
   planning, one `resolved` event for the page, dedupe, one SendGrid call per email page); a
   page that kept no users gets its `resolved` event (0 deliveries) here.

So the pipeline never holds more than one page of an audience, and a crash loses at most the page
in hand: its message is redelivered (or republished by `herald reconcile`, which settles each
page's message on its own, herald/reconcile.py) and read again from the same cursor. Every page
shares the request's trace and notificationId, so a user reached on two pages (the audience
changed between a page's first read and its re-read) or two users sharing an address on
different pages are deduped like one bulk request's: the same span is a silent redelivery,
another span with the same address a `duplicate`.

Each page's next message is published at most once in the usual case: once Pub/Sub has taken it,
a marker `audience_pages/{trace}.{n+1}` (state database, TTL `expires_at`) is written, and a
re-read of page n that finds the marker does not publish again. A crash between the publish and
the marker can still publish page n+1 twice; its second copy plans the same deliveries (silent
redeliveries at the dedupe step), and its own next page finds the first copy's marker.

A scheduled audience send is held whole (its sendTime is the outbox's, pipelines/schedule.py)
and read page by page once its `due` release comes back.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from google.cloud import firestore, pubsub_v1

from herald import events, users
from herald.clients import firestore_client, state_client
from herald.contracts import AudiencePage, Envelope, Release, Scope
from herald.events import Status
from herald.settings import Settings
from pipelines.resources import ProcessResource

EVENTS = "events"
COLLECTION = "audience_pages"
"""Markers of the page messages published, in the state database."""
KEEP = timedelta(days=2)
"""How long a page marker is kept (`expires_at`, for a Firestore TTL policy): far beyond the
time a page's message may be redelivered or republished."""
PUBLISH_TIMEOUT_S = 30.0


def marker_id(trace_id: str, page: int) -> str:
    return f"{trace_id}.{page}"


class _ReadPage(beam.DoFn):
    """Envelope -> (main) the envelopes to plan: requests that name their users as they are, an
    audience send's page as a bulk request of its users; (`events`) the `audience`,
    `audience_complete` and empty pages' `resolved` events."""

    def __init__(self, settings: Settings, users_db: ProcessResource[firestore.Client],
                 state_db: ProcessResource[firestore.Client],
                 publisher: ProcessResource[pubsub_v1.PublisherClient]) -> None:
        self._page_size = settings.audience_page_size
        self._topic = settings.topic_path(settings.requests_topic)
        self._users_db = users_db
        self._state_db = state_db
        self._publisher = publisher
        self.pages = Metrics.counter("herald", "audience_pages_read")
        self.users = Metrics.counter("herald", "audience_users_read")

    def process(self, envelope: Envelope) -> Iterator[Any]:
        page = envelope.audience_page
        if page is None or envelope.held_until is not None or envelope.release is Release.CANCELED:
            yield envelope  # names its users, or is the scheduler's to hold or cancel
            return
        audience = envelope.request.audience
        read = users.audience_page(self._users_db.get(), audience, page.cursor, self._page_size)
        self.pages.inc()
        self.users.inc(len(read.kept))
        size = page.users_before + len(read.kept)
        full = read.read >= self._page_size
        if full:
            self._publish_next(envelope, AudiencePage(page.number + 1, read.last, size))
        yield TaggedOutput(EVENTS, events.request_event(
            envelope, Status.AUDIENCE, page_users=len(read.kept), audience_size=size))
        if not full:
            yield TaggedOutput(EVENTS, events.request_event(
                envelope, Status.AUDIENCE_COMPLETE, audience_size=size))
        if not read.kept:
            yield TaggedOutput(EVENTS, events.request_event(envelope, Status.RESOLVED,
                                                            deliveries=0))
            return
        yield dataclasses.replace(
            envelope, page=page, request=dataclasses.replace(envelope.request, user_ids=read.kept))

    def _publish_next(self, envelope: Envelope, page: AudiencePage) -> None:
        """Page `page`'s message, unless its marker says it was published already; the marker is
        written once Pub/Sub has taken it. Raises on a failed publish: the runner retries the
        element, which has emitted nothing yet."""
        marker = self._state_db.get().collection(COLLECTION).document(
            marker_id(envelope.trace_id, page.number))
        if marker.get().exists:
            return
        data, attributes = dataclasses.replace(envelope, page=page, scope=Scope()).to_pubsub()
        self._publisher.get().publish(self._topic, data, **attributes).result(
            timeout=PUBLISH_TIMEOUT_S)
        marker.set({"published_at": datetime.now(timezone.utc),
                    "expires_at": datetime.now(timezone.utc) + KEEP})


class ExpandAudiences(beam.PTransform):
    """Envelopes -> (main) envelopes to plan, (`events`) the audience events (see _ReadPage)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, envelopes):
        settings = self._settings
        return envelopes | "ReadPage" >> beam.ParDo(_ReadPage(
            settings, ProcessResource(partial(firestore_client, settings)),
            ProcessResource(partial(state_client, settings)),
            ProcessResource(pubsub_v1.PublisherClient))).with_outputs(EVENTS, main="envelopes")
