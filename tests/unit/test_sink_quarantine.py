"""The Kafka sink stores a quarantined message as the intake path's bad_events row, once."""

from __future__ import annotations

from events.errors import BadReason, Rejection
from projections import schema
from streams.store.fake import InMemoryProjectionStore
from streams.worker.sink import Delivered, ProjectionSink, bad_headers


def _message(offset: int, rejection: Rejection, value: bytes) -> Delivered:
    headers = dict(bad_headers(rejection, "touchpoints", 2, 40 + offset))
    return Delivered("bad", 0, offset, value, headers)


def test_a_quarantined_message_becomes_one_bad_events_row_even_when_delivered_twice() -> None:
    """Reason, field, detail and the worker's source/offset reach the table; a redelivery adds nothing."""
    store = InMemoryProjectionStore()
    store.create_schema()
    sink = ProjectionSink(store)
    messages = [
        _message(
            0, Rejection(BadReason.UNKNOWN_TOUCHPOINT, "'web.x' is not in the registry", "touchpoint"), b"{}"
        ),
        _message(1, Rejection(BadReason.MALFORMED_JSON, "EOF while parsing"), b"{oops"),
    ]
    sink.write(messages)
    sink.write(messages)  # the same batch again (a retry after a lost answer): the token makes it a no-op
    rows = [
        (row["source"], row["position"], row["reason"], row["field"], row["raw"])
        for row in store.rows(schema.BAD_EVENTS, "live")
    ]
    assert rows == [
        ("touchpoints/2", 40, "unknown_touchpoint", "touchpoint", "{}"),
        ("touchpoints/2", 41, "malformed_json", None, "{oops"),
    ]
    assert store.scalar("SELECT count() FROM bad_events") == 2


def test_a_reason_this_version_does_not_know_is_kept_as_a_schema_violation_naming_it() -> None:
    """A message quarantined by a newer worker is stored, not lost; its detail says the original reason."""
    store = InMemoryProjectionStore()
    store.create_schema()
    headers = {
        "reason": b"brand_new_reason",
        "detail": b"something",
        "source": b"touchpoints/0",
        "offset": b"7",
    }
    ProjectionSink(store).write([Delivered("bad", 0, 0, b"{}", headers)])
    (row,) = store.rows(schema.BAD_EVENTS, "live")
    assert (row["reason"], row["detail"], row["position"]) == (
        "schema_violation",
        "brand_new_reason: something",
        7,
    )
