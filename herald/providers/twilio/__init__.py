"""Twilio Programmable Messaging: `sender.py` (twilio-python), `limits.py` (1,600-character body,
a long code's one message a second), `errors.py` (send-time and delivery-time error codes),
`status_callbacks.py` (status callbacks, incoming STOP and START, X-Twilio-Signature)."""
