"""Contract tests from the providers' documentation: each fixture under
tests/fixtures/providers/<provider>/responses/ is a documented answer (status, headers, body and
the page it comes from).

- Herald's sender, pointed at a plain stub HTTP server that serves the fixture, must reach the
  outcome the fixture expects (sent, or the provider's code, Herald's error class and the wait).
- The sandbox, given the input that makes the provider answer so (the fixture's `sandbox`), must
  answer in the same shape: same status, same codes and fields, the same way of saying "wait".
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from herald.contracts import Channel
from herald.providers.base import Sender
from herald.providers.providers_test import make_sender, outgoing
from herald.sandbox import SandboxServer

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "providers"
CHANNEL = {"fcm": Channel.PUSH, "twilio": Channel.SMS, "sendgrid": Channel.EMAIL}
ADDRESS = {"fcm": "tok-{i}", "twilio": "+1555000{i:04d}", "sendgrid": "user{i}@example.com"}
SANDBOX_PATH = {"fcm": "/v1/projects/{project}/messages:send",
                "twilio": "/2010-04-01/Accounts/AC0123/Messages.json", "sendgrid": "/v3/mail/send"}
NOW = re.compile(r"\{now\+(\d+)\}")


def fixtures() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path.parent.parent.name, path.stem, json.loads(path.read_text()))
            for path in sorted(FIXTURES.glob("*/responses/*.json"))]


ALL = fixtures()
IDS = [f"{provider}-{name}" for provider, name, _ in ALL]


def test_every_fixture_cites_its_documentation_page() -> None:
    assert {provider for provider, _, _ in ALL} == set(CHANNEL)
    for provider, name, fixture in ALL:
        assert re.match(r"https://(firebase\.google\.com|cloud\.google\.com|www\.twilio\.com)/",
                        fixture["source"]), (provider, name)
        assert {"status", "headers", "body", "expect"} <= set(fixture), (provider, name)


class _Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.answers, self.requests = answers, 0


class _StubHandler(BaseHTTPRequestHandler):
    """Answers each POST with the next of its answers (the last one repeats)."""

    server: _Stub
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.answers[min(self.server.requests, len(self.server.answers) - 1)]
        self.server.requests += 1
        body = b"" if answer.get("body") is None else json.dumps(answer["body"]).encode()
        self.send_response(answer["status"])
        for name, value in answer.get("headers", {}).items():
            self.send_header(name, NOW.sub(lambda m: str(int(time.time()) + int(m[1])), value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Any]:
    servers: list[_Stub] = []

    def serve(fixture: dict[str, Any]) -> _Stub:
        server = _Stub([fixture, *([fixture["then"]] if "then" in fixture else [])])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("provider", "name", "fixture"), ALL, ids=IDS)
def test_the_sender_reads_each_documented_answer(stub, provider, name, fixture) -> None:
    server = stub(fixture)
    channel = CHANNEL[provider]
    sender: Sender = make_sender(channel, f"http://127.0.0.1:{server.server_address[1]}",
                                 timeout_s=5.0)
    expect = fixture["expect"]
    count = len(expect.get("results", [None]))
    batch = [outgoing(channel, ADDRESS[provider].format(i=i), i) for i in range(count)]
    if provider == "sendgrid":  # one mail: a bulk send of one notification
        batch = [dataclasses.replace(item, notification_id="bulk") for item in batch]
    try:
        results = sender.send(batch)
    finally:
        sender.close()

    outcomes = [["sent"] if r.ok else [r.error_code, r.error_class.value] for r in results]
    if "results" in expect:
        assert outcomes == expect["results"]
        assert server.requests == expect.get("requests", 1)
    elif expect.get("ok"):
        assert outcomes == [["sent"]]
    else:
        assert outcomes == [[expect["error_code"], expect["error_class"]]]
        # no SDK retries behind Herald's back, but google-auth's: a 401 is retried with
        # refreshed credentials, twice (AuthorizedSession's max_refresh_attempts)
        refreshes = 2 if provider == "fcm" and fixture["status"] == 401 else 0
        assert server.requests == 1 + refreshes
    if "retry_after_s" in expect:
        assert results[0].retry_after_s == pytest.approx(expect["retry_after_s"], abs=1.5)


def shape(provider: str, status: int, headers: Any, body: Any) -> tuple:
    """What must match between the provider's documented answer and the sandbox's."""
    if provider == "fcm":
        error = (body or {}).get("error") or {}
        details = {d["@type"].rsplit(".", 1)[-1]: d for d in error.get("details", [])}
        return (status, error.get("status"), details.get("FcmError", {}).get("errorCode"),
                [v["field"] for v in details.get("BadRequest", {}).get("fieldViolations", [])],
                "Retry-After" in headers if status == 429 else None)
    if provider == "twilio":
        keys = sorted(body) if isinstance(body, dict) and "code" in body else None
        return status, (body or {}).get("code") if keys else None, keys
    errors = (body or {}).get("errors") or []
    return (status, [e.get("field") for e in errors], [sorted(e) for e in errors],
            "X-RateLimit-Reset" in headers, "Retry-After" in headers)


SANDBOXED = [(p, n, f) for p, n, f in ALL if "sandbox" in f]


@pytest.mark.parametrize(("provider", "name", "fixture"), SANDBOXED,
                         ids=[f"{p}-{n}" for p, n, _ in SANDBOXED])
def test_the_sandbox_answers_as_the_provider_documents(provider, name, fixture) -> None:
    given = fixture["sandbox"]
    with SandboxServer(latency_ms=0, project="herald-local", config=given.get("config")) as sandbox:
        path = SANDBOX_PATH[provider].format(project=given.get("project", "herald-local"))
        request = given["request"]
        response = requests.post(f"{sandbox.url}{path}", timeout=5,
                                 **({"json": request["json"]} if "json" in request
                                    else {"data": request["form"]}))
    body = response.json() if response.content else None
    documented = {**fixture["headers"]}
    assert shape(provider, response.status_code, response.headers, body) == shape(
        provider, fixture["status"], documented, fixture["body"])
    if fixture["status"] < 300:
        assert (body or {}).keys() == (fixture["body"] or {}).keys()
