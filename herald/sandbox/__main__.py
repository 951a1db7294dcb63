"""`python -m herald.sandbox`: run the provider sandbox as its own process.

The one `HERALD_SANDBOX_URL=...` line on stdout is the readiness signal: the socket is already
listening when it is printed, so a supervisor can read it (port 0 included) and export it as is.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any, Sequence

from herald.clients import bigquery_client
from herald.sandbox.callbacks import DEFAULT_TWILIO_AUTH_TOKEN, SendGridSigner
from herald.sandbox.push_outcomes import ExportSink
from herald.sandbox.server import SandboxServer
from herald.settings import Settings


def _fcm_export_sink() -> ExportSink | None:
    """Inserts into FCM's export table when the environment names a BigQuery endpoint (the local
    stack's emulator: BIGQUERY_API_ENDPOINT, with HERALD_PROJECT and HERALD_FCM_EXPORT_*, as every
    Herald process reads them); None without one, so the sandbox never writes to real BigQuery."""
    settings = Settings.from_env()
    if not settings.bigquery_endpoint:
        return None
    client = bigquery_client(settings)
    table = settings.fcm_export_table_id
    return lambda rows: client.insert_rows_json(table, rows)


def _faults(text: str) -> dict[str, Any]:
    """--faults: a `POST /_config` body, e.g. '{"seed": 7, "twilio": {"rate_limited": 0.1}}'."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(config, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m herald.sandbox",
                                     description="FCM/Twilio/SendGrid sandbox for Herald.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=100.0,
                        help="delay before every provider answer")
    parser.add_argument("--project", default="herald-local",
                        help="the only Firebase project FCM requests are accepted for")
    parser.add_argument("--faults", type=_faults, default={},
                        help="fault settings as JSON, in the shape POST /_config takes")
    parser.add_argument("--seed", type=int, help="seed for fault and outcome draws")
    parser.add_argument("--twilio-auth-token", default=DEFAULT_TWILIO_AUTH_TOKEN,
                        help="signs Twilio status callbacks (X-Twilio-Signature)")
    parser.add_argument("--sendgrid-webhook-url",
                        help="where SendGrid Event Webhook batches go (none are sent without it)")
    parser.add_argument("--twilio-incoming-url",
                        help="where POST /_inbound/twilio delivers a recipient's SMS (Twilio's "
                             "incoming message webhook)")
    parser.add_argument("--receipts-url",
                        help="Herald's POST /v1/receipts, where the sandbox, playing the app, "
                             "posts push receipts (none are posted without it)")
    parser.add_argument("--sendgrid-key-file", type=Path,
                        help="PEM ECDSA P-256 private key that signs SendGrid events "
                             "(a fresh key per start without it; GET /_keys serves the public key)")
    args = parser.parse_args(argv)
    config = {**args.faults, **({"seed": args.seed} if args.seed is not None else {})}
    try:
        signer = (SendGridSigner.from_pem(args.sendgrid_key_file.read_bytes())
                  if args.sendgrid_key_file else None)
        server = SandboxServer(args.host, args.port, latency_ms=args.latency_ms,
                               project=args.project, config=config,
                               twilio_auth_token=args.twilio_auth_token,
                               sendgrid_webhook_url=args.sendgrid_webhook_url,
                               sendgrid_signer=signer, fcm_export=_fcm_export_sink(),
                               receipts_url=args.receipts_url,
                               twilio_incoming_url=args.twilio_incoming_url)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    # SIGTERM takes the KeyboardInterrupt path, so a supervisor's stop closes the socket cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"HERALD_SANDBOX_URL={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
