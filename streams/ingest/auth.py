"""HMAC-SHA256 request signing for HTTP ingest: API keys, timestamp window, replay refusal, rate limits."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from events.errors import TouchpathError

KEY_HEADER = "X-Touchpath-Key"
TIMESTAMP_HEADER = "X-Touchpath-Timestamp"
SIGNATURE_HEADER = "X-Touchpath-Signature"
TOLERANCE_S = 300
MIN_SECRET_CHARS = 16
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")  # Unix seconds, optionally with a fraction


class AuthConfigError(TouchpathError):
    """The configured API keys are unusable; the message says which one and how to fix it."""


def parse_keys(spec: str, setting: str = "TOUCHPATH_INGEST_KEYS") -> dict[str, bytes]:
    """Parse "key_id:secret,key_id2:secret2" (several keys may be active at once, for rotation)."""
    keys: dict[str, bytes] = {}
    for position, item in enumerate(part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, secret = item.partition(":")
        if not sep or not KEY_ID.match(key_id):
            msg = (
                f"{setting}: entry {position + 1} is not KEY_ID:SECRET with a key id of letters, digits, "
                "'_', '.' or '-' (e.g. checkout:4f9c...); separate keys with commas"
            )
            raise AuthConfigError(msg)
        if len(secret) < MIN_SECRET_CHARS:
            msg = (
                f"{setting}: the secret of key '{key_id}' has {len(secret)} characters; use at least "
                f"{MIN_SECRET_CHARS} random ones, e.g. from: "
                "python3 -c 'import secrets; print(secrets.token_hex(32))'"
            )
            raise AuthConfigError(msg)
        if key_id in keys:
            msg = f"{setting}: key '{key_id}' is listed twice"
            raise AuthConfigError(msg)
        keys[key_id] = secret.encode()
    return keys


def sign(secret: bytes | str, timestamp: str | int, payload: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + payload)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(
    key_id: str, secret: bytes | str, payload: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three authentication headers for one request (sign every attempt afresh)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {KEY_HEADER: key_id, TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, payload)}


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was not authenticated: a short reason code and a sentence for the sender."""

    reason: str
    detail: str


class ReplayStore(Protocol):
    """Where used signatures outlive the process and reach the other replicas (streams.ingest.signatures)."""

    def load(self, now: int, remember: Callable[[str, int], None]) -> None:
        """Hand every signature still inside its window to `remember` (at start, and as others add)."""
        ...

    def record(self, signature: str, expires: int) -> None:
        """Make a newly used signature durable and visible to the other replicas; raise if it cannot."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class RequestAuthenticator:
    """Checks key, timestamp window and signature, and refuses a signature it has seen before.

    Signatures are remembered until their timestamp leaves the tolerance window, after which the
    timestamp check alone refuses them; so memory is bounded by the request rate times the window.
    With a replay store they are also recorded durably (before the request is answered) and loaded
    at start, so a restart or another replica refuses them too.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        tolerance_s: int = TOLERANCE_S,
        replay_capacity: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        replay_store: ReplayStore | None = None,
    ) -> None:
        self.keys = dict(keys)
        self.tolerance_s = tolerance_s
        self.replay_capacity = replay_capacity
        self.clock = clock
        self.replay_store = replay_store
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._expiry: list[tuple[int, str]] = []
        if replay_store is not None:
            replay_store.load(int(clock()), self.remember_used)

    def remember_used(self, signature: str, expires: int) -> None:
        """Mark a signature used elsewhere (an earlier run, another replica) until it expires."""
        with self._lock:
            if signature not in self._seen and expires >= int(self.clock()):
                self._seen.add(signature)
                heapq.heappush(self._expiry, (expires, signature))

    def is_used(self, key_id: str, signature: str) -> bool:
        """Whether this signature header value of the key is known as used (here or elsewhere)."""
        with self._lock:
            return f"{key_id}:{signature.removeprefix('sha256=').lower()}" in self._seen

    def identify(self, key_id: str | None) -> AuthFailure | None:
        """Refuse a missing or unknown key before the body is read."""
        if not key_id:
            return AuthFailure("missing_key", f"send your API key id in the {KEY_HEADER} header")
        if key_id not in self.keys:
            return AuthFailure("unknown_key", f"API key '{key_id[:64]}' is not active on this server")
        return None

    def verify(
        self, key_id: str | None, timestamp: str | None, signature: str | None, payload: bytes
    ) -> AuthFailure | None:
        """None when the request is authentic and fresh; the failure otherwise."""
        unknown = self.identify(key_id)
        if unknown is not None:
            return unknown
        assert key_id is not None
        if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
            return AuthFailure(
                "bad_timestamp",
                f"send the Unix time in seconds (digits only) in the {TIMESTAMP_HEADER} header",
            )
        now = self.clock()
        if abs(now - float(timestamp)) > self.tolerance_s:
            return AuthFailure(
                "stale_timestamp",
                f"{TIMESTAMP_HEADER} {timestamp} is more than {self.tolerance_s} s from the server's time "
                f"{int(now)}; check the sender's clock and sign each attempt afresh",
            )
        match = _SIGNATURE.match(signature or "")
        if match is None:
            return AuthFailure(
                "bad_signature",
                f"send {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of timestamp + '.' + body, "
                "keyed by the secret>",
            )
        expected = sign(self.keys[key_id], timestamp, payload).removeprefix("sha256=")
        if not hmac.compare_digest(expected, match.group(1).lower()):
            return AuthFailure(
                "bad_signature",
                "the signature does not match: sign timestamp + '.' + the exact body bytes with the "
                "key's secret",
            )
        signature_key = f"{key_id}:{expected}"
        expires = int(float(timestamp)) + self.tolerance_s + 1
        refused = self._remember(signature_key, expires, int(now))
        if refused is None and self.replay_store is not None:
            try:
                self.replay_store.record(signature_key, expires)
            except Exception as error:
                with self._lock:
                    self._seen.discard(signature_key)  # the sender may retry this very request
                return AuthFailure(
                    "unavailable", f"the replay store cannot record the request ({error}); retry"
                )
        return refused

    def _remember(self, signature: str, expires: int, now: int) -> AuthFailure | None:
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if signature in self._seen:
                return AuthFailure(
                    "replayed", "this signature was already used; sign every request (and every retry) afresh"
                )
            if len(self._seen) >= self.replay_capacity:
                return AuthFailure(
                    "busy", "too many signed requests within the timestamp window; retry in a few seconds"
                )
            self._seen.add(signature)
            heapq.heappush(self._expiry, (expires, signature))
        return None


class RateLimiter:
    """Token bucket per API key, in events per second with a burst; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key_id: str, events: int) -> float | None:
        """Spend `events` tokens; None when allowed, else seconds until they would be available."""
        if self.rate <= 0:
            return None
        cost = min(float(events), float(self.burst))
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= cost:
                self._buckets[key_id] = (tokens - cost, now)
                return None
            self._buckets[key_id] = (tokens, now)
            return (cost - tokens) / self.rate
