"""The providers' documented payloads in tests/fixtures/providers/<provider>/<kind>/*.json, for the
tests of the provider modules, of Herald's webhook endpoints and of the sandbox.

Each file is one documented payload, paraphrased from the provider's documentation, with its
`source` address, a `description`, the payload itself (Twilio: `form` and the StatusCallback URL's
`query`; SendGrid: the `events` array) and what Herald must make of it (`expected`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "providers"


def load(provider: str, kind: str) -> dict[str, dict[str, Any]]:
    """{file stem: fixture} of one provider's payloads of one kind ("callbacks", "events")."""
    return {path.stem: json.loads(path.read_text())
            for path in sorted((ROOT / provider / kind).glob("*.json"))}
