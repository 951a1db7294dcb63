"""FCM analytics labels: what every push carries in `fcm_options.analytics_label`, so FCM's own
reports, its Data API and its BigQuery export can be sliced the way Herald's analysts slice.

FCM's rules (https://firebase.google.com/docs/cloud-messaging/understand-delivery, "Adding
analytics labels to messages"): a label matches `^[a-zA-Z0-9-_.~%]{1,50}$`, a message carries one,
and a project may use at most 100 distinct labels a day (labels beyond that are not reported).
The FCM Data API groups Android delivery data by date, app and label
(https://firebase.google.com/docs/reference/fcmdata/rest/v1beta1/projects.androidApps.deliveryData/list).

Herald derives a label from the request's category and template, and keeps within the daily limit
by construction, whatever categories and templates senders invent:
- pairs (or whole categories) the operator lists in `HERALD_FCM_ANALYTICS_LABELS` get a label of
  their own, `<category>.<template>` or `<category>`, percent-encoded (FCM's character set is
  exactly RFC 3986's unreserved characters plus `%`);
- every other push is hashed (CRC-32 of category and template) into one of `buckets` fixed labels
  `other-00` ... so it is still sliced into stable groups, never into a 101st label.
The allow-list may hold at most 100 - buckets entries: at most 100 labels can ever appear.

No Herald imports beyond the standard library: herald.settings reads the allow-list through it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote

LABEL_PATTERN = re.compile(r"[a-zA-Z0-9\-_.~%]{1,50}")
"""FCM's `analytics_label` format, `^[a-zA-Z0-9-_.~%]{1,50}$`."""
MAX_LABELS_PER_DAY = 100
"""Distinct analytics labels FCM reports per project and day."""
DEFAULT_BUCKETS = 16
OTHER_PREFIX = "other-"


def encode(*parts: str) -> str:
    """`category.template` with each part percent-encoded (`quote` leaves exactly FCM's
    unreserved characters as they are), so the label reads as the request's own words."""
    return ".".join(quote(part, safe="") for part in parts)


def valid(label: str) -> bool:
    """Whether FCM accepts `label` as an analytics label."""
    return LABEL_PATTERN.fullmatch(label) is not None


@dataclass(frozen=True)
class AnalyticsLabels:
    """The label scheme: `allowed` labels (as `encode` writes them) plus `buckets` hash labels.

    Raises ValueError when an allowed entry is not a valid label or when allowed plus buckets
    exceed FCM's 100 labels a day.
    """

    allowed: frozenset[str] = frozenset()
    buckets: int = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        if not 1 <= self.buckets <= MAX_LABELS_PER_DAY:
            raise ValueError(f"buckets must be between 1 and {MAX_LABELS_PER_DAY}")
        if len(self.allowed) + self.buckets > MAX_LABELS_PER_DAY:
            raise ValueError(f"{len(self.allowed)} allowed labels plus {self.buckets} buckets "
                             f"exceed FCM's {MAX_LABELS_PER_DAY} distinct labels a day")
        bad = sorted(label for label in self.allowed
                     if not valid(label) or label.startswith(OTHER_PREFIX))
        if bad:
            raise ValueError(f"not valid FCM analytics labels (or in the reserved {OTHER_PREFIX}* "
                             f"range): {bad}")

    @classmethod
    def parse(cls, spec: str, buckets: int = DEFAULT_BUCKETS) -> AnalyticsLabels:
        """`category.template,category2` (HERALD_FCM_ANALYTICS_LABELS) -> a scheme; each entry is
        written as the request's words, encoded here."""
        return cls(frozenset(encode(*entry.split(".", 1)) for entry in _entries(spec)), buckets)

    def label(self, category: str | None, template: str | None) -> str:
        """The push's label: its category and template's own when allowed, else its category's,
        else its hash bucket's."""
        category, template = category or "", template or ""
        for candidate in (encode(category, template), encode(category)):
            if candidate in self.allowed:
                return candidate
        bucket = zlib.crc32(f"{category}\x00{template}".encode()) % self.buckets
        return f"{OTHER_PREFIX}{bucket:02d}"

    def all_labels(self) -> frozenset[str]:
        """Every label this scheme can give: at most MAX_LABELS_PER_DAY."""
        return self.allowed | {f"{OTHER_PREFIX}{bucket:02d}" for bucket in range(self.buckets)}


def _entries(spec: str) -> Iterable[str]:
    return filter(None, (entry.strip() for entry in spec.split(",")))
