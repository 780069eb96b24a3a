"""Quarantined input on the touchpoints.bad topic: the original bytes with the typed reason in headers."""

from __future__ import annotations

from collections.abc import Mapping

from events.errors import BadReason, Rejection


def bad_headers(rejection: Rejection, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a quarantined message: the typed reason and where it came from."""
    return [
        ("reason", rejection.reason.value.encode()),
        ("field", (rejection.field or "").encode()),
        ("detail", rejection.detail.encode()),
        ("source", f"{topic}/{partition}".encode()),
        ("offset", str(offset).encode()),
    ]


def rejection_of(headers: Mapping[str, bytes]) -> Rejection:
    """The rejection that bad_headers() wrote into a quarantined message's headers (for subscribers
    of touchpoints.bad; the worker's own bad_events rows travel with its batches)."""
    text, detail = headers["reason"].decode(), headers.get("detail", b"").decode()
    try:
        reason = BadReason(text)
    except ValueError:  # written by a newer worker: keep the message, say what it was
        reason, detail = BadReason.SCHEMA_VIOLATION, f"{text}: {detail}"
    return Rejection(reason, detail, headers.get("field", b"").decode() or None)
