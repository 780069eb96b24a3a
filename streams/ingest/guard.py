"""Connection limits uvicorn lacks: a connection cap with a fast 503, a header read timeout, quiet logs."""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from streams.common.logs import RepeatGate

_BUSY_BODY = (
    b'{"error":"busy","detail":"the server has as many open connections as it allows; retry shortly",'
    b'"retry_after_s":1}'
)
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)
_TIMEOUT_BODY = b'{"error":"request_timeout","detail":"the request headers did not arrive in time"}'
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)
log = logging.getLogger("touchpath.http")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-process connection limits of `ingest` and `serve`."""

    max_connections: int = 512  # beyond: 503 and close at once, so sockets never exhaust file handles
    header_timeout_s: float = 10.0  # from connection (or end of the previous response) to full headers
    body_timeout_s: float = 30.0  # to read a whole body once headers arrived
    keep_alive_s: int = 5  # idle time between requests on one connection


def default_max_connections() -> int:
    """Half the process's file-handle limit (chDB, Kafka and logs need the rest), at most 512."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(512, soft // 2))


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap and a header read timeout (slow clients closed)."""
    open_connections = [0]

    class GuardedH11Protocol(H11Protocol):
        _refused = False
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if open_connections[0] >= limits.max_connections:
                self._refused = True
                transport.write(BUSY_RESPONSE)
                transport.close()
                log.warning("http.connection_refused: %d connections open (the cap)", open_connections[0])
                return
            open_connections[0] += 1
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            open_connections[0] -= 1
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_headers():
                if self._header_timer is None:
                    self._arm()
            else:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # uvicorn's keep-alive timer runs until the next byte; then the header timer does.

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE)
                self.transport.close()

    GuardedH11Protocol.open_connections = open_connections  # type: ignore[attr-defined]
    return GuardedH11Protocol


class RepeatFilter(logging.Filter):
    """A stdlib logging filter around RepeatGate (asyncio's and uvicorn's loggers are stdlib ones)."""

    def __init__(self, burst: int = 5, window_s: float = 10.0) -> None:
        super().__init__()
        self.gate = RepeatGate(burst, window_s)

    def filter(self, record: logging.LogRecord) -> bool:
        allowed, dropped = self.gate.allow((record.name, str(record.msg)[:200]))
        if allowed and dropped:
            window = self.gate.window_s
            record.msg = f"{record.msg} (and {dropped} identical messages suppressed in {window:g} s)"
        return allowed


def install_repeat_filter(
    names: tuple[str, ...] = ("asyncio", "uvicorn", "uvicorn.error", "touchpath.http"),
) -> RepeatFilter:
    """Rate-limit repeated identical records of the loggers a flood reaches (idempotent per logger)."""
    repeat = RepeatFilter()
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RepeatFilter) for existing in logger.filters):
            logger.addFilter(repeat)
    return repeat


async def read_body(stream: Any, limit: int, timeout_s: float) -> bytes | TimeoutError | None:
    """The body, None once it grows beyond `limit` bytes, or TimeoutError when it does not arrive in time."""
    chunks: list[bytes] = []
    size = 0

    async def collect() -> bool:
        nonlocal size
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                return False
            chunks.append(chunk)
        return True

    try:
        complete = await asyncio.wait_for(collect(), timeout_s)
    except TimeoutError as error:
        return error
    return b"".join(chunks) if complete else None
