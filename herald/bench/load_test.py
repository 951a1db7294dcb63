import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from herald.bench.load import (NOT_SENT, SEQUENCE_MARKER, Endpoint, build_request, closed_loop, numbered,
                               open_loop, parse_head, schedule)


def test_schedule_paces_evenly() -> None:
    offsets = schedule(4, 2)
    assert offsets == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert len(schedule(185, 60)) == 11_100
    assert schedule(0, 10) == [] and schedule(10, 0) == []


def test_build_request_is_a_complete_keep_alive_post() -> None:
    raw = build_request(Endpoint("127.0.0.1", 8080, "/v1/x"), b'{"a":1}', {"Authorization": "Bearer k"})
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"Content-Length: 7" in head and b"Authorization: Bearer k" in head
    assert body == b'{"a":1}'


def test_numbered_keeps_the_width_so_content_length_stays_right() -> None:
    payload = b'{"notificationId": "n-' + SEQUENCE_MARKER + b'"}'
    assert numbered(payload, 42) == b'{"notificationId": "n-0000000000042"}'
    assert len(numbered(payload, 42)) == len(payload)
    assert numbered(b"{}", 1) == b"{}"
    with pytest.raises(ValueError):
        numbered(payload, 10 ** len(SEQUENCE_MARKER))


def test_parse_head() -> None:
    assert parse_head(b"HTTP/1.1 202 ACCEPTED\r\nContent-Length: 12\r\n\r\n") == (202, 12, False, False)
    assert parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n") \
        == (200, None, True, True)


def test_endpoint_parse_needs_host_and_port() -> None:
    assert Endpoint.parse("http://127.0.0.1:9/", "/p") == Endpoint("127.0.0.1", 9, "/p")
    with pytest.raises(ValueError):
        Endpoint.parse("https://example.com", "/p")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).count += 1
        close = type(self).count % 5 == 0  # now and then the server ends the connection
        chunked = type(self).count % 3 == 0
        self.send_response(202 if type(self).count % 7 else 503)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", "2")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"2\r\nok\r\n0\r\n\r\n" if chunked else b"ok")
        if close:
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_closed_loop_counts_statuses_through_closes_and_chunking(server: str) -> None:
    _Handler.bodies = []
    result = closed_loop(server, "/v1/x", [b"{}", b'{"n": "' + SEQUENCE_MARKER + b'"}'],
                         connections=4, warmup_s=0.05, duration_s=0.4)
    numbered_bodies = [body for body in _Handler.bodies if body != b"{}"]
    assert len(set(numbered_bodies)) == len(numbered_bodies) > 1
    assert result.ok > 0
    assert set(result.statuses) <= {202, 503}
    assert 503 in result.statuses or sum(result.statuses.values()) < 7
    assert not result.errors
    assert len(result.latencies_s) == result.ok
    assert result.generator_cpu_s > 0


def test_open_loop_sends_every_scheduled_request_and_records_times(server: str) -> None:
    # Slots 100 ms apart: the last one falls due 1/rate before the window closes, and a request
    # whose task has not reached a connection by then is not sent. At 200/s that slack was 5 ms,
    # less than a busy machine may take to wake the dispatcher.
    result = open_loop(server, "/v1/x", [b"{}"], rate=10, duration_s=1.0, max_connections=8,
                       drain_s=5)
    assert len(result.records) == 10
    assert all(r.status in (202, 503) for r in result.records)
    assert all(r.scheduled <= r.sent <= r.answered for r in result.records)
    assert result.connections_opened <= 8


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.2)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_open_loop_does_not_send_past_the_window_when_connections_run_out() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = open_loop(f"http://127.0.0.1:{httpd.server_address[1]}", "/v1/x", [b"{}"],
                           rate=100, duration_s=0.3, max_connections=1, drain_s=5)
    finally:
        httpd.shutdown()
        httpd.server_close()
    sent = [r for r in result.records if r.sent is not None]
    assert len(result.records) == 30
    assert 1 <= len(sent) <= 3  # one connection, 200 ms a request, a 0.3 s window
    assert all(r.error == NOT_SENT for r in result.records if r.sent is None)
    assert all(r.status == 202 for r in sent)
