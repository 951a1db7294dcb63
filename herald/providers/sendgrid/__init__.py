"""SendGrid v3 mail/send: `sender.py` (sendgrid-python, per-recipient failures), `limits.py`
(1,000 personalizations, 30 MB), `errors.py` (documented statuses, recipient fields,
X-RateLimit-Reset), `event_webhook.py` (every Event Webhook event type, the Signed Event
Webhook)."""
