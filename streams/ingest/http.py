"""HTTP ingest: signed POST /v1/events into Kafka or the embedded engine; health, metrics, read-only SQL."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pydantic_core
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response

from events.codec import check_contract, encode_json
from events.errors import Rejection, TouchpathError
from events.model import MAX_EVENT_BYTES, MAX_EVENT_DEPTH, TouchpointEvent
from events.registry import Registry
from events.sdk import BatchDelivery, ClientClosedError, TouchpathClient
from projections.engine import JourneyEngine, RowBatch
from projections.intake import Kind, Verdict
from projections.native_engine import NativeEngine
from streams.embedded.runner import EmbeddedRunner
from streams.ingest.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthFailure,
    RateLimiter,
    RequestAuthenticator,
)
from streams.ingest.guard import read_body
from streams.store.clickhouse import ClickHouseProjectionStore, StoreError
from streams.store.columns import ColumnBatch, merged
from streams.store.sqlguard import GuardedSQL, SqlRefusedError

log = structlog.get_logger("touchpath.ingest")

MAX_REQUEST_BYTES = 512 * 1024
MAX_EVENTS_PER_REQUEST = 500
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Request limits and the bound on waiting for durability (beyond it: 503)."""

    max_request_bytes: int = MAX_REQUEST_BYTES
    max_events: int = MAX_EVENTS_PER_REQUEST
    max_event_depth: int = MAX_EVENT_DEPTH
    ack_timeout_s: float = 5.0
    retry_after_s: int = 5
    max_future_s: float = 300.0  # events later than the server's clock plus this: future_timestamp
    body_timeout_s: float = 30.0  # a body not complete this long after its headers: 408


# -- parsing the body ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Item:
    """One valid event of a request: its position, the model and the one-line JSON that is stored."""

    index: int
    event: TouchpointEvent
    raw: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """One invalid event of a request: its position, the bytes as understood, and why."""

    index: int
    raw: bytes
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class Batch:
    """A request body split into events: sent = len(items) + len(refused)."""

    items: list[Item]
    refused: list[Refused]

    @property
    def sent(self) -> int:
        """How many events the request carried."""
        return len(self.items) + len(self.refused)


@dataclass(frozen=True, slots=True)
class BodyError:
    """The body as a whole cannot be taken: HTTP status, error code and a sentence for the sender."""

    status: int
    error: str
    detail: str


def _check_one(
    index: int, raw: bytes, registry: Registry | None, max_depth: int, not_after_ms: int | None
) -> Item | Refused:
    result = check_contract(raw, not_after_ms=not_after_ms, max_depth=max_depth, registry=registry)
    if isinstance(result, Rejection):
        return Refused(index, raw, result)
    return Item(index, result, raw)


_NOT_ONE_VALUE = object()


def _element_bytes(element: object) -> bytes | tuple[bytes, Rejection]:
    """One array element as the one-line JSON that is checked and stored, or its bytes and rejection."""
    encoded = encode_json(element)
    if isinstance(encoded, Rejection):
        return _faithful(element), encoded
    return encoded


def _faithful(element: object) -> bytes:
    """The element as JSON text that keeps NaN, Infinity and big integers (for the quarantine)."""
    try:
        return json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode()[:MAX_EVENT_BYTES]
    except (ValueError, RecursionError):
        return b""


def split_events(
    body: bytes,
    content_type: str | None,
    limits: IngestLimits,
    registry: Registry | None = None,
    now_ms: int | None = None,
) -> Batch | BodyError:
    """Split a body (one JSON event, a JSON array, or NDJSON) and check every event on its own.

    The signed bytes alone decide how they are read; Content-Type (outside the signature) is not
    used: a body that is one JSON value is JSON, anything else is NDJSON (one event per line). No
    body reads differently both ways except a one-line array, which only JSON can carry anyway.
    now_ms is the receiving server's wall clock: events beyond it plus limits.max_future_s are
    refused as future_timestamp (None: no such check).
    """
    del content_type  # see above: not part of the signed payload, so never part of the meaning
    not_after_ms = None if now_ms is None else now_ms + int(limits.max_future_s * 1000)
    if not body.strip():
        return BodyError(400, "empty_body", "the body is empty; send one event, a JSON array or NDJSON")
    raws: list[bytes | tuple[bytes, Rejection]]
    try:
        # The event decoder's own parser (jiter): numbers decode exactly as in NDJSON and files.
        decoded = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError:
        decoded = _NOT_ONE_VALUE
    if isinstance(decoded, list):
        if len(decoded) > limits.max_events:
            return _too_many(len(decoded), limits)
        raws = [_element_bytes(element) for element in decoded]
    elif isinstance(decoded, dict):
        raws = [_element_bytes(decoded)]
    else:
        # Not one JSON value, or one that is no event (null, a number, a string): NDJSON lines, each
        # accepted or refused on its own, exactly as the same line would be in a file.
        raws = [line.strip() for line in body.split(b"\n") if line.strip()]
    if not raws:
        return BodyError(400, "empty_body", "the request carries no events")
    if len(raws) > limits.max_events:
        return _too_many(len(raws), limits)
    items: list[Item] = []
    refused: list[Refused] = []
    for index, raw in enumerate(raws):
        if isinstance(raw, tuple):
            refused.append(Refused(index, raw[0], raw[1]))
            continue
        checked = _check_one(index, raw, registry, limits.max_event_depth, not_after_ms)
        if isinstance(checked, Item):
            items.append(checked)
        else:
            refused.append(checked)
    return Batch(items, refused)


def _too_many(count: int, limits: IngestLimits) -> BodyError:
    return BodyError(
        413,
        "too_many_events",
        f"the request carries {count} events; send at most {limits.max_events} per request",
    )


# -- sinks ---------------------------------------------------------------------------------------
class SinkUnavailableError(TouchpathError):
    """The sink could not make the events durable in time: the sender gets 503 and should retry."""


class EventSink(Protocol):
    """Where accepted events go; submit() returns only once they are durable (else raises)."""

    mode: str

    async def submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        """Make batch.items durable; returns rejections the sink itself made, by index."""
        ...

    def health(self) -> tuple[bool, dict[str, object]]:
        """Whether the sink can take events now, with details for operators."""
        ...

    def open_events(self) -> int:
        """Events handed on but not yet durable."""
        ...

    def close(self) -> None:
        """Release the sink's resources."""
        ...


class KafkaSink:
    """Sends through the SDK's idempotent acks=all producer; durable = acknowledged by Kafka."""

    mode = "kafka"

    def __init__(self, client: TouchpathClient, ack_timeout_s: float, max_open_events: int = 50_000) -> None:
        self.client = client
        self.ack_timeout_s = ack_timeout_s
        self.max_open_events = max_open_events
        # send() can block on topic metadata while the broker is away: never on the event loop.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="touchpath-ingest-send")
        self._last_ack = 0.0
        self._last_failure = 0.0
        self._last_problem = ""

    async def submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        if not batch.items:
            return {}
        open_events = self.client.unacknowledged()
        if open_events + len(batch.items) > self.max_open_events:
            self._failed(f"{open_events} events are still waiting for Kafka acknowledgements")
            msg = (
                f"{open_events} earlier events still wait for Kafka's acknowledgement; Kafka is slow or away"
            )
            raise SinkUnavailableError(msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout_s
        pairs = [(item.event, item.raw) for item in batch.items]
        settled: asyncio.Future[None] = loop.create_future()

        def wake(_: BatchDelivery) -> None:
            loop.call_soon_threadsafe(_resolve, settled)

        try:
            if self.client.ready():
                # The usual case: sends only append to the producer's buffers, so doing them here
                # is cheaper than a hop through a thread (and they can't block).
                outcome = self.client.emit_validated_batch(pairs)
            else:  # send() may block on topic metadata while the broker is away: not on the loop
                sending = loop.run_in_executor(self._executor, self.client.emit_validated_batch, pairs)
                outcome = await asyncio.wait_for(asyncio.shield(sending), self.ack_timeout_s)
            outcome.add_done_callback(wake)
            await asyncio.wait_for(settled, max(0.0, deadline - loop.time()))
        except TimeoutError as error:
            self._failed(f"events not acknowledged within {self.ack_timeout_s} s")
            msg = (
                f"Kafka at {self.client.bootstrap} did not acknowledge all {len(pairs)} events within "
                f"{self.ack_timeout_s} s"
            )
            raise SinkUnavailableError(msg) from error
        except ClientClosedError as error:
            raise SinkUnavailableError("the server is shutting down") from error
        if outcome.failures:
            first = outcome.failures[0][1]
            self._failed(str(first))
            msg = f"{len(outcome.failures)} of {len(pairs)} events were not acknowledged by Kafka: {first}"
            raise SinkUnavailableError(msg)
        self._last_ack = time.time()
        return {}

    def open_events(self) -> int:
        return self.client.unacknowledged()

    def _failed(self, problem: str) -> None:
        self._last_failure = time.time()
        self._last_problem = problem

    def health(self) -> tuple[bool, dict[str, object]]:
        healthy = self._last_failure <= self._last_ack
        details: dict[str, object] = {
            "mode": self.mode,
            "bootstrap": self.client.bootstrap,
            "topic": self.client.topic,
            "unacknowledged_events": self.client.unacknowledged(),
        }
        if not healthy:
            details["last_problem"] = self._last_problem
        return healthy, details

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.client.close(timeout_s=self.ack_timeout_s)


def _resolve(settled: asyncio.Future[None]) -> None:
    if not settled.done():  # it may have been cancelled by the timeout
        settled.set_result(None)


class EmbeddedSink:
    """The embedded runner of `run` behind HTTP; durable = written to the store.

    Requests take the runner's intake path, too-late settling and kept journey states, so a
    restarted `serve` continues journeys as `run` does (restore_state before the first request).
    Concurrent requests are group-committed: each folds its events into the engine, then whoever
    gets the write lock collects the rows of every request folded so far and writes them.
    """

    mode = "embedded"

    def __init__(
        self,
        engine: JourneyEngine | NativeEngine,
        store: ClickHouseProjectionStore,
        reader: ClickHouseProjectionStore | None = None,
        *,
        sql: GuardedSQL | None = None,
        sql_workers: int = 2,
        sql_queue: int = 16,
    ) -> None:
        self.engine = engine
        self.runner = EmbeddedRunner(engine, store, keep_state=True)
        self.store = store
        # Analysts' queries run on read-only sessions of their own (chDB takes concurrent inserts
        # and queries from one process), through the one guarded path, on their own threads: a
        # heavy query occupies an SQL worker, never one of the threads that make events durable.
        self.reader = reader
        self.sql = sql if sql is not None else (reader or store).analyst_sql(sessions=sql_workers)
        self._sql_executor = ThreadPoolExecutor(max_workers=sql_workers, thread_name_prefix="touchpath-sql")
        self._sql_slots = threading.BoundedSemaphore(sql_workers + sql_queue)
        # Lock order: write, then engine, then store; never engine while holding store.
        self._engine_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._folded = 0  # requests folded into the engine
        self._written = 0  # requests whose rows are in the store
        self._unwritten: RowBatch | ColumnBatch | None = None
        self._last_problem = ""
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="touchpath-serve")

    async def submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._submit, batch, source)

    def _submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        runner = self.runner
        verdicts: dict[int, Rejection] = {}
        with self._engine_lock:
            for refused in batch.refused:
                runner.refuse(refused.raw, source, refused.index, refused.rejection)
            late: list[tuple[int, Verdict]] = []
            for item in batch.items:
                verdict = runner.take(item.event, item.raw, source, item.index)
                if verdict.kind is Kind.LATE:
                    late.append((item.index, verdict))
                elif verdict.rejection is not None:
                    verdicts[item.index] = verdict.rejection
            if late:
                # Too late for its journey: stored already (re-sent after a restart) is a duplicate,
                # else too_late, as in `run`.
                try:
                    with self._store_lock:
                        settled = runner.settle([verdict for _, verdict in late])
                except StoreError as error:
                    self._last_problem = str(error)
                    raise SinkUnavailableError(f"the projection store cannot be read: {error}") from error
                for (index, _), verdict in zip(late, settled, strict=True):
                    if verdict.rejection is not None:
                        verdicts[index] = verdict.rejection
            self._folded += 1
            ticket = self._folded
        with self._write_lock:
            if self._written >= ticket:
                return verdicts  # a concurrent request wrote our rows with its own
            with self._engine_lock:
                rows = runner.collect()
                upto = self._folded
            if self._unwritten is not None:
                rows, self._unwritten = merged(self._unwritten, rows), None
            try:
                with self._store_lock:
                    runner.write(rows)
            except StoreError as error:
                self._unwritten = rows  # written by the next request that gets here
                self._last_problem = str(error)
                raise SinkUnavailableError(f"the projection store refused the write: {error}") from error
            self._written = upto
            self._last_problem = ""
        return verdicts

    async def query(self, sql: str, parameters: dict[str, object]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """One analyst query through the guarded path, on the SQL workers (SqlBusyError when queued full)."""
        if not self._sql_slots.acquire(blocking=False):
            raise SqlBusyError
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._sql_executor, self.sql.run, sql, parameters)
        finally:
            self._sql_slots.release()

    def health(self) -> tuple[bool, dict[str, object]]:
        counters = self.engine.counters
        details: dict[str, object] = {
            "mode": self.mode,
            "store": self.store.description,
            "scenario": self.engine.scenario,
            "events_accepted": counters.accepted,
            "events_bad": counters.bad,
        }
        if self._last_problem:
            details["last_problem"] = self._last_problem
        return not self._last_problem, details

    def open_events(self) -> int:
        return 0

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._sql_executor.shutdown(wait=True)
        self.sql.close()


class SqlBusyError(TouchpathError):
    """Every SQL worker is busy and the queue is full: the analyst gets 429 and retries later."""


# -- metrics -------------------------------------------------------------------------------------
@dataclass
class IngestMetrics:
    """Counters and a latency histogram, rendered in the Prometheus text format."""

    requests: Counter[str] = field(default_factory=Counter)  # by status code
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (key, result)
    rejections: Counter[str] = field(default_factory=Counter)  # by reason
    auth_failures: Counter[str] = field(default_factory=Counter)  # by reason
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    latency_sum: float = 0.0
    latency_count: int = 0

    def observe(self, status: int, seconds: float) -> None:
        """Count one answered POST /v1/events and its latency."""
        self.requests[str(status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for position, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.buckets[position] += 1

    def render(self, gauges: dict[str, float]) -> str:
        """The exposition text served at GET /metrics."""
        out: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}"))

        family("touchpath_ingest_requests_total", "counter", "POST /v1/events requests by HTTP status.")
        out.extend(
            f'touchpath_ingest_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())
        )
        family("touchpath_ingest_events_total", "counter", "Events by API key and result.")
        out.extend(
            f'touchpath_ingest_events_total{{key="{key}",result="{result}"}} {n}'
            for (key, result), n in sorted(self.events.items())
        )
        family("touchpath_ingest_rejections_total", "counter", "Rejected events by reason.")
        out.extend(
            f'touchpath_ingest_rejections_total{{reason="{r}"}} {n}'
            for r, n in sorted(self.rejections.items())
        )
        family("touchpath_ingest_auth_failures_total", "counter", "Unauthenticated requests by reason.")
        out.extend(
            f'touchpath_ingest_auth_failures_total{{reason="{r}"}} {n}'
            for r, n in sorted(self.auth_failures.items())
        )
        family("touchpath_ingest_request_seconds", "histogram", "Latency of POST /v1/events.")
        for bound, count in zip(LATENCY_BUCKETS_S, self.buckets, strict=True):
            out.append(f'touchpath_ingest_request_seconds_bucket{{le="{bound}"}} {count}')
        out.append(f'touchpath_ingest_request_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        out.append(f"touchpath_ingest_request_seconds_sum {self.latency_sum:.6f}")
        out.append(f"touchpath_ingest_request_seconds_count {self.latency_count}")
        for name, value in gauges.items():
            family(name, "gauge", name.replace("_", " ") + ".")
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"


# -- the app -------------------------------------------------------------------------------------
def _json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, default=str), status, headers=headers, media_type="application/json")


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


_EVENTS_DOC = {
    "description": "One touchpoint event (a JSON object), a JSON array of up to 500 events, or NDJSON "
    "(one event per line; the body alone decides, Content-Type is not used). Each event is at most "
    "32 KB; a request at most 512 KB. "
    "Sign with X-Touchpath-Key, X-Touchpath-Timestamp (Unix seconds) and X-Touchpath-Signature: "
    "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>.",
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
        },
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


def create_app(
    sink: EventSink,
    authenticator: RequestAuthenticator,
    *,
    limits: IngestLimits | None = None,
    limiter: RateLimiter | None = None,
    registry: Registry | None = None,
    sql_authenticator: RequestAuthenticator | None = None,
    metrics: IngestMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The ingest app around a sink; the caller owns (and closes) the sink.

    clock is the wall clock against which far-future events are refused (the engine has none).
    """
    limits = limits or IngestLimits()
    limiter = limiter or RateLimiter(0, 1)
    stats = metrics or IngestMetrics()
    app = FastAPI(
        title="touchpath ingest",
        description="Signed HTTP ingest of touchpoint events. The event schema: `touchpath schema`.",
        version="1",
    )

    def refuse(failure: AuthFailure, started: float) -> Response:
        stats.auth_failures[failure.reason] += 1
        if failure.reason == "unavailable":  # the replay store could not record the signature
            stats.observe(503, time.perf_counter() - started)
            body = {"error": "unavailable", "detail": failure.detail, "retry_after_s": limits.retry_after_s}
            return _json(503, body, _retry_after(limits.retry_after_s))
        stats.observe(401, time.perf_counter() - started)
        return _json(401, {"error": "unauthorized", "reason": failure.reason, "detail": failure.detail})

    def answer(
        status: int, body: dict[str, object], started: float, headers: dict[str, str] | None = None
    ) -> Response:
        stats.observe(status, time.perf_counter() - started)
        return _json(status, body, headers)

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Send touchpoint events",
        openapi_extra={"requestBody": _EVENTS_DOC},
        responses={
            202: {"description": "Every event was accepted and is durable (acknowledged by Kafka)."},
            400: {"description": "Some events (or the body) were invalid; the valid ones were accepted."},
            401: {"description": "Missing or unknown key, stale timestamp, bad or replayed signature."},
            413: {"description": "Body over 512 KB or more than 500 events."},
            429: {"description": "The key's rate limit is exhausted; see Retry-After."},
            503: {"description": "Events could not be made durable in time; retry (re-signed)."},
        },
    )
    async def post_events(request: Request) -> Response:
        started = time.perf_counter()
        key_id = request.headers.get(KEY_HEADER)
        unknown = authenticator.identify(key_id)
        if unknown is not None:
            return refuse(unknown, started)
        assert key_id is not None
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
            return answer(413, _too_large(int(declared), limits), started)
        body = await read_body(request.stream(), limits.max_request_bytes, limits.body_timeout_s)
        if isinstance(body, TimeoutError):
            detail = f"the body did not arrive within {limits.body_timeout_s:g} s; send it at once"
            return answer(408, {"error": "request_timeout", "detail": detail, "accepted": 0}, started)
        if body is None:
            return answer(413, _too_large(None, limits), started)
        failure = await _verify(
            authenticator,
            key_id,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
        )
        if failure is not None:
            return refuse(failure, started)
        now_ms = int(clock() * 1000)
        parsed = split_events(body, request.headers.get("content-type"), limits, registry, now_ms)
        wait = limiter.take(key_id, parsed.sent if isinstance(parsed, Batch) else 1)
        if wait is not None:
            detail = (
                f"key '{key_id}' may send {limiter.rate:g} events/s (burst {limiter.burst}); "
                f"retry in {math.ceil(wait)} s"
            )
            body_429: dict[str, object] = {
                "error": "rate_limited",
                "detail": detail,
                "retry_after_s": math.ceil(wait),
            }
            return answer(429, body_429, started, _retry_after(wait))
        if isinstance(parsed, BodyError):
            return answer(
                parsed.status, {"error": parsed.error, "detail": parsed.detail, "accepted": 0}, started
            )
        # bad_events rows are keyed by (source, position): one source per request keeps them apart.
        request_id = uuid.uuid4().hex[:16]
        source = f"http:{key_id}/{request_id}"
        try:
            verdicts = await sink.submit(parsed, source)
        except SinkUnavailableError as error:
            log.warning("ingest.unavailable", key=key_id, events=len(parsed.items), problem=str(error))
            errors = [_error_entry(r.index, r.rejection) for r in parsed.refused]
            body_503: dict[str, object] = {
                "error": "unavailable",
                "detail": f"{error}. None of this request's events may be assumed stored: send it again "
                "(signed afresh); events re-sent with the same event_id change nothing.",
                "accepted": 0,
                "rejected": len(parsed.refused),
                "errors": errors,
                "retry_after_s": limits.retry_after_s,
            }
            return answer(503, body_503, started, _retry_after(limits.retry_after_s))
        rejected = sorted(
            [(r.index, r.rejection) for r in parsed.refused] + list(verdicts.items()),
            key=lambda pair: pair[0],
        )
        accepted = parsed.sent - len(rejected)
        stats.events[(key_id, "accepted")] += accepted
        stats.events[(key_id, "rejected")] += len(rejected)
        for _, rejection in rejected:
            stats.rejections[rejection.reason.value] += 1
        if not rejected:
            return answer(202, {"accepted": accepted, "rejected": 0}, started)
        return answer(
            400,
            {
                "error": "invalid_events",
                "detail": f"{len(rejected)} of {parsed.sent} events were rejected (see errors); "
                f"the other {accepted} were accepted",
                "request_id": request_id,
                "accepted": accepted,
                "rejected": len(rejected),
                "errors": [_error_entry(index, rejection) for index, rejection in rejected],
            },
            started,
        )

    @app.get("/health", summary="Whether this server can take events now")
    async def health() -> Response:
        healthy, details = sink.health()
        return _json(200 if healthy else 503, {"status": "ok" if healthy else "unavailable", **details})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        gauges = {"touchpath_ingest_unacknowledged_events": float(sink.open_events())}
        return Response(stats.render(gauges), media_type="text/plain; version=0.0.4")

    if isinstance(sink, EmbeddedSink):
        _add_sql(app, sink, sql_authenticator, limiter)
    return app


async def _verify(
    authenticator: RequestAuthenticator,
    key_id: str | None,
    timestamp: str | None,
    signature: str | None,
    payload: bytes,
) -> AuthFailure | None:
    """Verify; with a durable replay store the record is a blocking write, so it runs off the loop."""
    if authenticator.replay_store is None:
        return authenticator.verify(key_id, timestamp, signature, payload)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, authenticator.verify, key_id, timestamp, signature, payload)


def _too_large(declared: int | None, limits: IngestLimits) -> dict[str, object]:
    limit = f"{limits.max_request_bytes:,} bytes ({limits.max_request_bytes // 1024} KB)"
    if declared is not None:
        size = f"the body is {declared:,} bytes (Content-Length), over the limit of {limit} per request"
    else:
        # A chunked body has no Content-Length: reading stops as soon as it passes the limit.
        size = f"the body is over the limit of {limit} per request (reading stopped there)"
    return {
        "error": "too_large",
        "detail": f"{size}; nothing was accepted. Split the events into requests of at most {limit} "
        f"and {limits.max_events} events (each event at most {MAX_EVENT_BYTES // 1024} KB).",
        "accepted": 0,
    }


def _error_entry(index: int, rejection: Rejection) -> dict[str, object]:
    return {
        "index": index,
        "reason": rejection.reason.value,
        "field": rejection.field,
        "detail": rejection.detail,
    }


def _add_sql(
    app: FastAPI, sink: EmbeddedSink, authenticator: RequestAuthenticator | None, limiter: RateLimiter
) -> None:
    @app.get(
        "/v1/sql",
        summary="Run a read-only SQL query against the projections",
        description="GET /v1/sql?q=SELECT...&param_NAME=VALUE binds {NAME:Type} server-side. Signed like "
        "POST /v1/events with a key from TOUCHPATH_SQL_KEYS; the signed payload is the raw query string.",
    )
    async def sql(request: Request) -> Response:
        if authenticator is None:
            return _json(
                403,
                {"error": "disabled", "detail": "SQL over HTTP is off; set TOUCHPATH_SQL_KEYS to enable it"},
            )
        key_id = request.headers.get(KEY_HEADER)
        failure = await _verify(
            authenticator,
            key_id,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            request.scope.get("query_string", b""),
        )
        if failure is not None and failure.reason == "unavailable":
            return _json(503, {"error": "unavailable", "detail": failure.detail}, _retry_after(5))
        if failure is not None:
            return _json(401, {"error": "unauthorized", "reason": failure.reason, "detail": failure.detail})
        assert key_id is not None
        wait = limiter.take(key_id, 1)
        if wait is not None:
            return _json(429, {"error": "rate_limited", "retry_after_s": math.ceil(wait)}, _retry_after(wait))
        if len(request.query_params.getlist("q")) > 1:
            return _json(400, {"error": "bad_query", "detail": "pass the query once, as ?q=SELECT ..."})
        query = request.query_params.get("q", "")
        if not query.strip():
            return _json(400, {"error": "bad_query", "detail": "pass the query as ?q=SELECT ..."})
        parameters: dict[str, object] = {
            name.removeprefix("param_"): value
            for name, value in request.query_params.items()
            if name.startswith("param_")
        }
        try:
            columns, rows = await sink.query(query, parameters)
        except SqlRefusedError as error:
            return _json(400, {"error": "bad_query", "rule": error.rule, "detail": str(error)})
        except SqlBusyError:
            detail = "every SQL worker is busy and the queue is full; retry in a few seconds"
            return _json(429, {"error": "busy", "detail": detail, "retry_after_s": 5}, _retry_after(5))
        except StoreError as error:
            return _json(503, {"error": "unavailable", "detail": str(error)}, _retry_after(5))
        return _json(200, {"columns": columns, "rows": [list(row) for row in rows]})
