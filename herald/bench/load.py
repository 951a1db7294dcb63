"""Load generators the bench owns: closed-loop (N connections, each waits for its answer before the
next request) and open-loop (requests leave at a fixed pace whether or not earlier ones came back).

Both speak HTTP/1.1 with keep-alive over raw asyncio streams, with the request bytes built once,
because the generator shares two cores with the system under test: a generic client (requests,
httpx) costs several times more CPU per request. Each run reports the CPU its own thread used
(`time.thread_time`), so the report can say what the generator took from the machine.

Open-loop records carry the *scheduled* time as well as the send time: if the generator or the
server falls behind, the wait shows up as latency instead of being silently skipped (no
coordinated omission).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

RECONNECT_PAUSE_S = 0.05
SEQUENCE_MARKER = b"@@@@SEQ@@@@@@"
"""In a closed-loop body, replaced by a zero-padded request number of the same width (so the
Content-Length stays right): every request unique, e.g. its notificationId, without building
every payload in advance. The edge's idempotency would answer a repeated id from its records."""


def numbered(payload: bytes, sequence: int) -> bytes:
    """`payload` with SEQUENCE_MARKER (if any) replaced by `sequence`, same width."""
    if SEQUENCE_MARKER not in payload:
        return payload
    digits = f"{sequence:0{len(SEQUENCE_MARKER)}d}".encode()
    if len(digits) != len(SEQUENCE_MARKER):
        raise ValueError(f"sequence {sequence} does not fit the marker's width")
    return payload.replace(SEQUENCE_MARKER, digits)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, path: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"need an http://host:port URL, got {url!r}")
        return cls(parts.hostname, parts.port, path)


def build_request(endpoint: Endpoint, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    """The complete bytes of one keep-alive POST with a JSON body."""
    lines = [f"POST {endpoint.path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length (None if absent), chunked?, server closes? from a response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    return status, length, chunked, close


class StaleConnection(ConnectionError):
    """The server closed a kept-alive connection before answering anything on it."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.endpoint.host, self.endpoint.port, limit=1 << 20)
        self.used = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    @property
    def is_open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        """Send one request and read its whole response; StaleConnection if a reused connection
        was closed under us before any byte came back (safe to retry: nothing was processed)."""
        if not self.is_open:
            await self.open()
        assert self.reader is not None and self.writer is not None
        reused = self.used > 0
        self.used += 1
        try:
            self.writer.write(payload)
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.close()
            if reused and (not isinstance(error, asyncio.IncompleteReadError) or not error.partial):
                raise StaleConnection(str(error)) from error
            raise
        status, length, chunked, close = parse_head(head)
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body, close = await self.reader.read(), True
        if close:
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def send(connection: Connection, payload: bytes) -> tuple[int, bytes]:
    """`connection.request`, retried once on a fresh connection if the old one had gone stale."""
    try:
        return await connection.request(payload)
    except StaleConnection:
        return await connection.request(payload)


class Clock:
    """Monotonic time with a wall-clock anchor: precise intervals, and wall times comparable to
    other processes' timestamps (the sandbox ledger) on the same machine."""

    def __init__(self) -> None:
        self.perf0 = time.perf_counter()
        self.wall0 = time.time()

    def wall(self, perf: float | None = None) -> float:
        return self.wall0 + ((time.perf_counter() if perf is None else perf) - self.perf0)


# --- closed loop ---------------------------------------------------------------------------------

@dataclass
class ClosedLoopResult:
    connections: int
    window_s: float
    ok: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    latencies_s: list[float] = field(default_factory=list)
    generator_cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        """2xx answers per second completed inside the measurement window."""
        return self.ok / self.window_s if self.window_s > 0 else 0.0


async def _closed_loop(endpoint: Endpoint, payloads: Sequence[bytes], connections: int,
                       warmup_s: float, duration_s: float, ok: Callable[[int], bool]
                       ) -> ClosedLoopResult:
    result = ClosedLoopResult(connections, duration_s)
    picker = itertools.cycle(range(len(payloads)))
    sequence = itertools.count()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s

    async def worker() -> None:
        connection = Connection(endpoint)
        while (sent_at := time.perf_counter()) < stop_at:
            try:
                status, _ = await send(connection, numbered(payloads[next(picker)],
                                                            next(sequence)))
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                if time.perf_counter() >= measure_from:
                    result.errors[type(error).__name__] += 1
                connection.close()
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            done_at = time.perf_counter()
            if sent_at >= measure_from and done_at <= stop_at:
                result.statuses[status] += 1
                if ok(status):
                    result.ok += 1
                    result.latencies_s.append(done_at - sent_at)
        connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return result


def closed_loop(url: str, path: str, bodies: Sequence[bytes], *, connections: int,
                warmup_s: float, duration_s: float, headers: Mapping[str, str] | None = None,
                ok: Callable[[int], bool] = lambda status: 200 <= status < 300) -> ClosedLoopResult:
    """`connections` clients in a loop for warmup + duration; only requests sent and answered
    inside the measured window count. Bodies are used in turn; SEQUENCE_MARKER in a body becomes
    the request's number. Runs on the calling thread."""
    endpoint = Endpoint.parse(url, path)
    payloads = [build_request(endpoint, body, headers) for body in bodies]
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    result = asyncio.run(_closed_loop(endpoint, payloads, connections, warmup_s, duration_s, ok))
    result.generator_cpu_s = time.thread_time() - cpu0
    result.wall_s = time.perf_counter() - wall0
    return result


# --- open loop -----------------------------------------------------------------------------------

def schedule(rate: float, duration_s: float) -> list[float]:
    """Offsets (seconds from start) of an evenly paced open-loop run: request i at i / rate."""
    if rate <= 0 or duration_s <= 0:
        return []
    return [index / rate for index in range(int(round(rate * duration_s)))]


NOT_SENT = "not sent: no free connection before the window ended"


@dataclass
class OpenRecord:
    """One open-loop request: wall-clock times (s since the epoch); None when it did not happen."""

    index: int
    scheduled: float
    sent: float | None = None
    answered: float | None = None
    status: int | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class OpenLoopResult:
    rate: float
    duration_s: float
    records: list[OpenRecord]
    start_wall: float
    max_connections: int
    connections_opened: int = 0
    late_dispatches: int = 0
    """Requests the dispatcher itself sent more than 10 ms after their slot (generator too slow)."""
    generator_cpu_s: float = 0.0
    wall_s: float = 0.0


class _Pool:
    """Idle connections (LIFO, so warm ones are reused first) up to a maximum; waiters queue FIFO."""

    def __init__(self, endpoint: Endpoint, maximum: int) -> None:
        self.endpoint, self.maximum = endpoint, maximum
        self.idle: list[Connection] = []
        self.count = 0
        self.opened = 0
        self.waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> Connection:
        if self.idle:
            return self.idle.pop()
        if self.count < self.maximum:
            self.count += 1
            self.opened += 1
            return Connection(self.endpoint)
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, connection: Connection) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


async def _open_loop(endpoint: Endpoint, payloads: Sequence[bytes], rate: float, duration_s: float,
                     max_connections: int, drain_s: float, clock: Clock,
                     on_answer: Callable[[OpenRecord], None] | None) -> OpenLoopResult:
    offsets = schedule(rate, duration_s)
    pool = _Pool(endpoint, max_connections)
    start = time.perf_counter()
    result = OpenLoopResult(rate, duration_s, [], clock.wall(start), max_connections)

    window_closed = False

    async def fire(record: OpenRecord, payload: bytes) -> None:
        connection = await pool.acquire()
        if window_closed:  # still queued for a connection when the window ended: never sent
            record.error = NOT_SENT
            pool.release(connection)
            return
        record.sent = clock.wall()
        try:
            record.status, _ = await send(connection, payload)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            record.error = type(error).__name__
            connection.close()
        finally:
            pool.release(connection)
        record.answered = clock.wall()
        if on_answer:
            on_answer(record)

    tasks = []
    for index, offset in enumerate(offsets):
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.010:
            result.late_dispatches += 1
        record = OpenRecord(index, clock.wall(due))
        result.records.append(record)
        tasks.append(asyncio.ensure_future(fire(record, payloads[index % len(payloads)])))
    end = start + duration_s
    if end > time.perf_counter():
        await asyncio.sleep(end - time.perf_counter())
    window_closed = True
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for record in result.records:
        if record.answered is None and record.error is None:
            record.error = "not answered within the drain time"
    pool.close()
    result.connections_opened = pool.opened
    return result


def open_loop(url: str, path: str, bodies: Sequence[bytes], *, rate: float, duration_s: float,
              max_connections: int = 128, drain_s: float = 30.0,
              headers: Mapping[str, str] | None = None, clock: Clock | None = None,
              on_answer: Callable[[OpenRecord], None] | None = None) -> OpenLoopResult:
    """Send bodies[i % len] at start + i/rate for `duration_s`, then wait at most `drain_s` for
    answers still out. A request still waiting for one of the `max_connections` when the window
    ends is not sent (error NOT_SENT): the offered window stays the window. Runs on the calling
    thread."""
    endpoint = Endpoint.parse(url, path)
    payloads = [build_request(endpoint, body, headers) for body in bodies]
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    result = asyncio.run(_open_loop(endpoint, payloads, rate, duration_s, max_connections,
                                    drain_s, clock or Clock(), on_answer))
    result.generator_cpu_s = time.thread_time() - cpu0
    result.wall_s = time.perf_counter() - wall0
    return result
