"""The loader stores each batch of journey-events once: quarantined records, doubled batches, retries."""

from __future__ import annotations

import pytest

from events.errors import BadReason, Rejection
from projections import schema
from projections.intake import quarantine_row
from streams.store.fake import InMemoryProjectionStore
from streams.worker.health import WorkerHealth
from streams.worker.loader import Loader
from streams.worker.quarantine import rejection_of
from streams.worker.records import Kind, Record, encode


def _loader(store: InMemoryProjectionStore) -> Loader:
    return Loader(store, bootstrap="unused", topic="je", input_topic="tp", consumer_id="test", partitions=3)


def _batch(first: int, end: int, rows: dict[str, list[tuple[object, ...]]]) -> bytes:
    return encode(Record(Kind.BATCH, 2, first, end, stream_time=0, rows=rows, source_ts=[1]))


def _event(event_id: str) -> tuple[object, ...]:
    return ("live", event_id, "c-1", 5, "web", "web.cart", "", None, None, None, None, None, None, "{}", "")


def test_a_quarantined_record_becomes_one_bad_events_row_even_when_delivered_twice() -> None:
    """Reason, field, detail, source/offset and the original bytes reach the table;
    the same batch delivered again (a crash before the loader's progress) adds nothing."""
    store = InMemoryProjectionStore()
    store.create_schema()
    bad = [
        quarantine_row(
            "live", "touchpoints/2", 40,
            Rejection(BadReason.UNKNOWN_TOUCHPOINT, "'web.x' is not in the registry", "touchpoint"), b"{}",
        ),
        quarantine_row("live", "touchpoints/2", 41, Rejection(BadReason.MALFORMED_JSON, "EOF"), b"{oops"),
    ]  # fmt: skip
    record = (2, 0, _batch(40, 42, {schema.BAD_EVENTS.name: bad}), 0)
    _loader(store).load([record])
    _loader(store).load([record])  # not resumed: the retry of a load whose progress was lost
    rows = [
        (row["source"], row["position"], row["reason"], row["field"], row["raw"])
        for row in store.rows(schema.BAD_EVENTS, "live")
    ]
    assert rows == [
        ("touchpoints/2", 40, "unknown_touchpoint", "touchpoint", "{}"),
        ("touchpoints/2", 41, "malformed_json", None, "{oops"),
    ]
    assert store.scalar("SELECT count() FROM bad_events") == 2


def test_a_batch_written_twice_is_loaded_once() -> None:
    """A journey worker killed after publishing folds the same input again: only the batches that
    continue the partition's chain reach the tables."""
    store = InMemoryProjectionStore()
    store.create_schema()
    events = schema.TOUCHPOINT_EVENTS.name
    _loader(store).load(
        [
            (2, 0, _batch(0, 10, {events: [_event("e-1")]}), 0),
            (2, 1, _batch(0, 12, {events: [_event("e-1-again")]}), 0),
            (2, 2, _batch(10, 20, {events: [_event("e-2")]}), 0),
        ]
    )
    assert [row["event_id"] for row in store.rows(schema.TOUCHPOINT_EVENTS, "live")] == ["e-1", "e-2"]


def test_a_reason_this_version_does_not_know_is_kept_as_a_schema_violation_naming_it() -> None:
    """A message quarantined by a newer worker is read, not lost; its detail says the original reason."""
    headers = {
        "reason": b"brand_new_reason",
        "detail": b"something",
        "source": b"touchpoints/0",
        "offset": b"7",
    }
    rejection = rejection_of(headers)
    assert (rejection.reason, rejection.detail) == (BadReason.SCHEMA_VIOLATION, "brand_new_reason: something")


def test_latency_runs_from_each_events_arrival_at_the_journey_worker_to_its_rows_being_stored() -> None:
    """The loader reports the arrival times its batches carry: events that arrived after this
    process started are latency samples, those of a batch folded before it (a backlog loaded after
    a loader restart) are not, so a restart does not show as latency."""
    store = InMemoryProjectionStore()
    store.create_schema()
    started_ms = 1_700_000_000_000
    health = WorkerHealth(started_ms)
    loader = Loader(
        store, bootstrap="unused", topic="je", input_topic="tp", consumer_id="test", partitions=3,
        visible=health.rows_written,
    )  # fmt: skip
    before, after = [started_ms - 60_000], [started_ms + 1_000, started_ms + 1_100, started_ms + 1_300]
    rows = {schema.TOUCHPOINT_EVENTS.name: [_event("e-1")]}
    old = encode(Record(Kind.BATCH, 2, 0, 1, stream_time=0, rows=rows, source_ts=before))
    new = encode(Record(Kind.BATCH, 2, 1, 4, stream_time=0, rows=rows, source_ts=after))
    loader.load([(2, 0, old, 0), (2, 1, new, 0)])
    body = health.body(store_error=None, rebalancing=False)
    assert body["latency_samples"] == len(after)
    # All stored at one moment: the spread of the samples is the spread of the arrivals.
    assert body["latency_ms_p99"] - body["latency_ms_p50"] == pytest.approx(100.0, abs=0.2)
