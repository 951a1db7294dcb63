"""What FCM refuses, checked before a push is accepted (at the edge) and by the sandbox.

No Herald imports: herald/contracts.py imports this module.
"""

from __future__ import annotations

from typing import Mapping

MAX_PAYLOAD_BYTES = 4096
"""FCM's payload limit for a message to a token ("4096 bytes for most messages ... includes both
the keys and the values"; 2,048 for topics, which Herald does not use):
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode (INVALID_ARGUMENT, message too
big) and https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages."""

RESERVED_DATA_KEYS = frozenset({"from", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
"""`Message.data` keys FCM reserves: "from", "message_type", or any key starting with "google" or
"gcm" (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages#Message, field
`data`); a message using one is refused with INVALID_ARGUMENT."""

RECEIPT_DATA_KEY = "receipt"
"""The data key of the receipt token the app posts back to Herald (herald/receipts.py)."""
HERALD_DATA_KEYS = ("notification_id", "span_id", RECEIPT_DATA_KEY)
"""The keys Herald's sender adds to every push's data, so the device can report its delivery."""
SPAN_ID_CHARS = 16
"""Length of a delivery's span id (herald.events.span_for)."""
RECEIPT_TOKEN_CHARS = SPAN_ID_CHARS + 1 + 10 + 1 + 43
"""Length of a receipt token (herald.receipts.ReceiptKey.token): span id, expiry, MAC."""


def reserved_data_key(key: str) -> bool:
    """Whether FCM reserves `key` for itself (exact names and prefixes, case-sensitive as FCM)."""
    return key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES)


def payload_bytes(title: str, body: str, data: Mapping[str, str]) -> int:
    """The payload FCM counts for a notification-and-data push: the UTF-8 bytes of the
    notification title and body and of every data key and value (no JSON punctuation: the limit
    is on "the keys and the values")."""
    return sum(len(text.encode()) for text in (title, body, *data, *data.values()))


def push_payload_bytes(title: str, body: str, data: Mapping[str, str],
                       notification_id: str) -> int:
    """`payload_bytes` of the push Herald will send, with the ids it adds to `data`."""
    ids = {"notification_id": notification_id, "span_id": "0" * SPAN_ID_CHARS,
           RECEIPT_DATA_KEY: "0" * RECEIPT_TOKEN_CHARS}
    return payload_bytes(title, body, {**data, **ids})
