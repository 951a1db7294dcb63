"""FCM HTTP v1: `sender.py` (firebase-admin), `limits.py` (4,096-byte payload, reserved data keys),
`errors.py` (FCM's ErrorCode enum and Google's canonical codes, classified)."""
