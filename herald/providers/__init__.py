"""Everything Herald knows about each provider, one package per provider.

`base.py` holds what every sender takes and returns and the `ErrorClass` every documented error is
classified into. Each provider package (`fcm/`, `twilio/`, `sendgrid/`) holds its SDK-backed
`sender.py` (endpoint set by configuration only: the sandbox locally, the provider's own when
None), its `limits.py` (imported by herald/contracts.py and the sandbox) and its `errors.py`, the
table of every documented error code with the page it comes from; Twilio's and SendGrid's also
hold what the provider calls back with: `twilio/status_callbacks.py` (status callbacks, incoming
STOP and START, request signatures) and `sendgrid/event_webhook.py` (every Event Webhook event
type, its signature), read into herald/callback_events.py's one shape. Nothing is imported here, so
contracts.py can import a limits module without pulling the SDKs in.
"""
