"""Provider sandbox: FCM, Twilio and SendGrid look-alikes for the local stack and tests.

Run it with `python -m herald.sandbox`, or in-process with `SandboxServer(...).start()`.
"""

from herald.sandbox.callbacks import SendGridSigner
from herald.sandbox.faults import SandboxSettings
from herald.sandbox.ledger import Delivery, Ledger, LedgerEntry, SentCallback
from herald.sandbox.server import SandboxServer

__all__ = ["Delivery", "Ledger", "LedgerEntry", "SandboxServer", "SandboxSettings",
           "SendGridSigner", "SentCallback"]
