"""`python -m herald.sandbox`: run the provider sandbox as its own process.

The one `HERALD_SANDBOX_URL=...` line on stdout is the readiness signal: the socket is already
listening when it is printed, so a supervisor can read it (port 0 included) and export it as is.
"""

from __future__ import annotations

import argparse
import signal
from typing import Sequence

from herald.sandbox.server import SandboxServer


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m herald.sandbox",
                                     description="FCM/Twilio/SendGrid sandbox for Herald.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=100.0,
                        help="delay before every provider answer")
    parser.add_argument("--project", default="herald-local",
                        help="the only Firebase project FCM requests are accepted for")
    args = parser.parse_args(argv)
    server = SandboxServer(args.host, args.port, latency_ms=args.latency_ms, project=args.project)
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
