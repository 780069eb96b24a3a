"""Idle and slow connections cannot hold the server: connection cap, header and body timeouts, quiet logs."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import structlog
import uvicorn

from events.errors import Rejection
from projections.journeys import JourneyModel
from streams.cli.ingest import server_config
from streams.common.logs import configure_logging
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.guard import ConnectionLimits, RepeatFilter
from streams.ingest.http import Batch, IngestLimits, create_app

SECRET = "ingest-secret-0123456789"
LIMITS = ConnectionLimits(max_connections=20, header_timeout_s=1.0, body_timeout_s=1.0)
BODY = orjson.dumps(
    {
        "event_id": "e-1",
        "customer_id": "c-1",
        "occurred_at": "2026-03-02T09:00:00Z",
        "channel": "web",
        "touchpoint": "web.product_page",
    }
)


class CountingSink:
    """A sink that takes every event at once (the connection layer is what is under test)."""

    mode = "test"

    def __init__(self) -> None:
        self.received = 0

    async def submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        self.received += len(batch.items)
        return {}

    def health(self) -> tuple[bool, dict[str, object]]:
        return True, {"mode": self.mode}

    def open_events(self) -> int:
        return 0

    def close(self) -> None:
        return None


@pytest.fixture
def server(model: JourneyModel) -> Iterator[tuple[int, uvicorn.Server]]:
    """A real uvicorn server with the guarded protocol, on a free port, in a thread."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    app = create_app(
        CountingSink(),
        RequestAuthenticator({"shop": SECRET.encode()}),
        limits=IngestLimits(body_timeout_s=LIMITS.body_timeout_s),
        registry=model.registry,
    )
    instance = uvicorn.Server(server_config(app, "127.0.0.1", port, LIMITS))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert instance.started
    yield port, instance
    instance.should_exit = True
    thread.join(timeout=15)


def _request(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(raw)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and len(b"".join(chunks)) > 40:
                break
        return b"".join(chunks)


def _signed_post(port: int) -> bytes:
    headers = signed_headers("shop", SECRET, BODY, int(time.time()))
    lines = [
        b"POST /v1/events HTTP/1.1",
        b"Host: x",
        b"Connection: close",
        f"Content-Length: {len(BODY)}".encode(),
    ]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    return _request(port, b"\r\n".join(lines) + b"\r\n\r\n" + BODY)


def _read_all(connection: socket.socket, wait_s: float) -> bytes:
    connection.settimeout(wait_s)
    chunks = []
    try:
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks) + b"<still open>"
    return b"".join(chunks)


def test_idle_connections_beyond_the_cap_get_503_and_idle_ones_are_closed(
    server: tuple[int, uvicorn.Server],
) -> None:
    """At the cap new connections get an immediate 503; idle ones get 408 and close; service resumes."""
    port, _ = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(LIMITS.max_connections)]
    time.sleep(0.3)  # let the server register them
    beyond = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    try:
        for connection in beyond:
            answer = _read_all(connection, 3.0)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
            assert b"Retry-After: 1" in answer
            assert not answer.endswith(b"<still open>")
        # The idle ones time out (header timeout 1 s): a 408 naming the reason, then closed.
        for connection in idle:
            answer = _read_all(connection, 5.0)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            assert b"request_timeout" in answer
        # Capacity is back: signed ingest and /health are served.
        assert _signed_post(port).startswith(b"HTTP/1.1 202")
        assert _request(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )
    finally:
        for connection in idle + beyond:
            connection.close()


def test_trickled_headers_and_bodies_are_cut_off(server: tuple[int, uvicorn.Server]) -> None:
    """Headers sent a byte at a time, and a body that never completes, end in 408 instead of a held slot."""
    port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as slow_headers:
        started = time.monotonic()
        answer = b""
        slow_headers.settimeout(0.2)
        for byte in b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
            try:
                slow_headers.sendall(bytes([byte]))
            except OSError:
                break
            try:
                answer += slow_headers.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
            if time.monotonic() - started > 10:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]

    headers = signed_headers("shop", SECRET, BODY, int(time.time()))
    head = [b"POST /v1/events HTTP/1.1", b"Host: x", f"Content-Length: {len(BODY)}".encode()]
    head += [f"{name}: {value}".encode() for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port)) as slow_body:
        slow_body.sendall(b"\r\n".join(head) + b"\r\n\r\n" + BODY[:10])
        answer = _read_all(slow_body, 5.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert b"did not arrive within 1 s" in answer


def test_a_flood_of_identical_log_lines_is_thinned() -> None:
    """10,000 identical errors pass as a handful of lines; the next window says how many were dropped."""
    flood = RepeatFilter(burst=5, window_s=0.2)
    record = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource", None, None
    )
    passed = sum(flood.filter(record) for _ in range(10_000))
    assert passed == 5
    time.sleep(0.25)
    assert flood.filter(record)
    assert "9995 identical messages suppressed" in str(record.msg)


def test_repeated_structured_warnings_are_thinned(capsys: pytest.CaptureFixture[str]) -> None:
    """touchpath's own warnings (one per failing request in an outage) pass 5 times per window."""
    configure_logging("info")
    log = structlog.get_logger("touchpath.test")
    for _ in range(1000):
        log.warning("test.flood_warning", problem="Kafka is away")
    log.info("test.flood_info")
    lines = [line for line in capsys.readouterr().err.splitlines() if "test.flood" in line]
    assert len([line for line in lines if "flood_warning" in line]) == 5
    assert any("flood_info" in line for line in lines)
