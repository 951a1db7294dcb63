"""`herald dlq replay`: send parked items back through once their cause is fixed.

Dead letters wait on the dead-letter topic's `-hold` subscription (herald.dead_letters). A replay
pulls them, republishes each to the topic it came from (`DeadLetter.replay`: a delivery scoped to
its own span under the dead letter's id, anything else as it first came) and acknowledges it only
once Pub/Sub has the copy, so a crash mid-replay repeats an item rather than losing it (and the
pipeline's claims make the repeat harmless). Items the filter leaves out stay parked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.api_core import exceptions
from google.cloud import pubsub_v1

from herald.dead_letters import HOLD_SUFFIX, DeadLetter
from herald.settings import Settings

PULL_BATCH = 100
PULL_TIMEOUT_S = 5.0


@dataclass
class Report:
    replayed: int = 0
    left: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def replay(settings: Settings, subscriber: pubsub_v1.SubscriberClient,
           publisher: pubsub_v1.PublisherClient, reasons: frozenset[str] = frozenset(),
           limit: int | None = None) -> Report:
    """Replay parked items whose reason is in `reasons` (all when empty), at most `limit`."""
    subscription = settings.subscription_path(settings.dead_letter_topic + HOLD_SUFFIX)
    report, left, seen = Report(), [], set()
    try:
        while limit is None or report.replayed < limit:
            try:
                received = subscriber.pull(subscription=subscription, max_messages=PULL_BATCH,
                                           timeout=PULL_TIMEOUT_S, retry=None).received_messages
            except exceptions.DeadlineExceeded:
                break
            fresh = [r for r in received if r.message.message_id not in seen]
            if not fresh:
                break
            for item in fresh:
                seen.add(item.message.message_id)
                try:
                    dead_letter = DeadLetter.from_pubsub(item.message.data, item.message.attributes)
                except KeyError:  # not parked by Herald: not ours to send anywhere
                    left.append(item.ack_id)
                    continue
                wanted = dead_letter.replayable and (not reasons or dead_letter.reason in reasons)
                if not wanted or (limit is not None and report.replayed >= limit):
                    left.append(item.ack_id)
                    continue
                topic, data, attributes = dead_letter.replay()
                publisher.publish(settings.topic_path(topic), data, **attributes).result(timeout=30)
                subscriber.acknowledge(subscription=subscription, ack_ids=[item.ack_id])
                report.replayed += 1
                report.by_reason[dead_letter.reason] = report.by_reason.get(dead_letter.reason, 0) + 1
    finally:
        if left:  # back on the shelf at once, for the next replay
            subscriber.modify_ack_deadline(subscription=subscription, ack_ids=left,
                                           ack_deadline_seconds=0)
        report.left = len(left)
    return report
