"""Webhook delivery of alerts: a background thread, retries with backoff, one outcome per attempt."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import httpx
import structlog

log = structlog.get_logger("touchpath.delivery")

RETRYABLE_STATUS = frozenset({408, 425, 429})


class Outcome(StrEnum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # error or 5xx/408/429; it will be retried
    REJECTED = "rejected"  # the receiver refused it (another 4xx or a redirect): not retried
    GAVE_UP = "gave_up"  # the last allowed attempt failed
    UNSENT = "unsent"  # the process stopped before it could be (re)tried
    DROPPED = "dropped"  # the delivery queue was full


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One alert for one destination."""

    alert_id: str
    team: str
    url: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """The outcome of one attempt to deliver a job."""

    job: DeliveryJob
    attempt: int
    attempted_at_ms: int
    outcome: Outcome
    status_code: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a destination is tried."""

    attempts: int = 5
    first_delay: float = 0.5  # seconds before the 2nd attempt; doubles each time
    factor: float = 2.0
    max_delay: float = 30.0
    timeout: float = 5.0  # per HTTP request

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_delay, self.first_delay * self.factor ** (attempt - 1)))


# post(url, body, headers, timeout) -> HTTP status; raises on network errors.
Poster = Callable[[str, bytes, Mapping[str, str], float], int]


def redact_url(url: str) -> str:
    """A webhook URL safe to show and store: host and first path segment only (the rest of a
    Slack-style webhook path is a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    segments = [segment for segment in parts.path.split("/") if segment]
    path = f"/{segments[0]}" if segments else ""
    if len(segments) > 1:
        path += "/…"
    return f"{parts.scheme}://{host}{path}" + ("?…" if parts.query else "")


class WebhookDelivery:
    """Delivers alert payloads on a background thread; `submit` never blocks the caller.

    Each failed attempt is retried after an exponentially growing delay until `policy.attempts`;
    every attempt's outcome is kept for `take_attempts()` (the caller writes them to
    `alert_deliveries`), and `failing()` names destinations whose last attempt did not deliver.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        post: Poster | None = None,
        max_queue: int = 10_000,
        wall_clock: Callable[[], float] = time.time,
        on_attempt: Callable[[DeliveryAttempt], None] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self._post = post
        self._on_attempt = on_attempt  # called on the delivery thread after each attempt
        self._max_queue = max_queue
        self._wall_clock = wall_clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, DeliveryJob]] = []  # (due, seq, attempt, job)
        self._seq = 0
        self._attempts: list[DeliveryAttempt] = []
        self._last: dict[str, DeliveryAttempt] = {}  # latest attempt per destination URL
        self._closing = False
        self._stopped = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, job: DeliveryJob) -> bool:
        """Queue a job; False (and a `dropped` attempt) if the queue is full or delivery closed."""
        with self._cond:
            if self._closing or len(self._heap) >= self._max_queue:
                self._record(DeliveryAttempt(job, 0, self._now_ms(), Outcome.DROPPED, None, "queue full"))
                return False
            self._push(time.monotonic(), 1, job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="touchpath-delivery", daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def take_attempts(self) -> list[DeliveryAttempt]:
        """Attempts finished since the last call."""
        with self._cond:
            attempts, self._attempts = self._attempts, []
        return attempts

    def failing(self) -> dict[str, str]:
        """Destinations (redacted, with their team) whose latest attempt did not deliver."""
        with self._cond:
            return {
                f"{redact_url(url)} (team {attempt.job.team})": (
                    f"{attempt.outcome.value} after attempt {attempt.attempt}: {attempt.error}"
                )
                for url, attempt in self._last.items()
                if attempt.outcome is not Outcome.DELIVERED
            }

    def pending(self) -> int:
        """Jobs waiting for a (re)try."""
        with self._cond:
            return len(self._heap) + int(self._busy)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (retries included) for up to `timeout` seconds, then stop; jobs
        still waiting are recorded as `unsent`."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(self.policy.timeout + 1.0)
        with self._cond:
            for _, _, attempt, job in sorted(self._heap):
                self._record(
                    DeliveryAttempt(
                        job, attempt, self._now_ms(), Outcome.UNSENT, None, "stopped before sending"
                    )
                )
            self._heap = []

    # -- the worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        client = httpx.Client(timeout=self.policy.timeout) if self._post is None else None
        try:
            while True:
                with self._cond:
                    item = self._next_due()
                    if item is None:
                        return
                    self._busy = True
                try:
                    self._attempt(item[0], item[1], client)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            if client is not None:
                client.close()

    def _next_due(self) -> tuple[int, DeliveryJob] | None:
        """Wait (holding the condition) for the next due job; None when it is time to stop."""
        while True:
            if self._stopped:
                return None
            now = time.monotonic()
            if self._heap and self._heap[0][0] <= now:
                _, _, attempt, job = heapq.heappop(self._heap)
                return attempt, job
            if self._closing and not self._heap:
                return None
            self._cond.wait(self._heap[0][0] - now if self._heap else None)

    def _attempt(self, attempt: int, job: DeliveryJob, client: httpx.Client | None) -> None:
        status: int | None = None
        error = ""
        started = self._now_ms()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "touchpath-alerts",
            "Idempotency-Key": job.alert_id,
            "X-Touchpath-Alert-Id": job.alert_id,
        }
        try:
            if self._post is not None:
                status = self._post(job.url, job.payload, headers, self.policy.timeout)
            else:
                assert client is not None
                status = client.post(job.url, content=job.payload, headers=headers).status_code
        except (httpx.HTTPError, OSError) as caught:
            error = f"{type(caught).__name__}: {caught}"
        if status is not None and 200 <= status < 300:
            outcome = Outcome.DELIVERED
        elif status is not None and status < 500 and status not in RETRYABLE_STATUS:
            outcome = Outcome.REJECTED
            error = error or f"HTTP {status}: the receiver refused the payload"
        elif attempt >= self.policy.attempts:
            outcome = Outcome.GAVE_UP
            error = error or f"HTTP {status}"
        else:
            outcome = Outcome.FAILED
            error = error or f"HTTP {status}"
        record = DeliveryAttempt(job, attempt, started, outcome, status, error)
        with self._cond:
            self._record(record)
            if outcome is Outcome.FAILED:
                self._push(time.monotonic() + self.policy.delay(attempt), attempt + 1, job)
        if self._on_attempt is not None:
            self._on_attempt(record)
        if outcome in (Outcome.GAVE_UP, Outcome.REJECTED):
            log.warning(
                "alert.delivery_failed",
                destination=redact_url(job.url),
                team=job.team,
                alert_id=job.alert_id,
                outcome=outcome.value,
                attempts=attempt,
                error=error,
            )

    def _push(self, due: float, attempt: int, job: DeliveryJob) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, attempt, job))

    def _record(self, attempt: DeliveryAttempt) -> None:
        self._attempts.append(attempt)
        self._last[attempt.job.url] = attempt

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)
