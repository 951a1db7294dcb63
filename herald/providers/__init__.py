"""Provider senders: the official FCM, Twilio and SendGrid SDKs behind one `Sender` protocol.

Each sender takes an optional endpoint (the sandbox locally, the provider's own when None), so the
pipeline's code is the same everywhere.
"""

from herald.providers.base import Outgoing, ProviderError, Sender, SendResult
from herald.providers.fcm import FcmSender
from herald.providers.sendgrid_email import SendGridSender
from herald.providers.twilio_sms import TwilioSender

__all__ = ["FcmSender", "Outgoing", "ProviderError", "SendGridSender", "SendResult", "Sender",
           "TwilioSender"]
