"""Per-batch journey-events records: round trip, the chain rule, recovery from snapshots, the offset guard."""

from __future__ import annotations

from projections import schema
from streams.worker.offsets import OffsetGuard, Verdict
from streams.worker.records import Chain, Kind, Record, Replayer, decode, decode_header, encode, erased_key


def _batch(first: int, end: int, states: dict[str, bytes], partition: int = 2) -> Record:
    return Record(Kind.BATCH, partition, first, end, stream_time=end * 10, states=states)


def test_a_batch_record_keeps_rows_states_and_quarantined_bytes() -> None:
    """Rows of every table, encoded states and a quarantined record's raw (invalid UTF-8) bytes
    come back as they went in; the header alone is readable without the body."""
    bad = ("live", "touchpoints/2", 41, "malformed_json", None, "EOF", b"{\xff oops")
    record = Record(
        Kind.BATCH, 2, 40, 45, 1_000, 7,
        rows={schema.TOUCHPOINT_EVENTS.name: [["live", "e-1", "c-1", 5]], schema.BAD_EVENTS.name: [bad]},
        states={"c-1": b'[1,"c-1"]', "c-2": b"\x00binary"}, source_ts=[11, 12],
    )  # fmt: skip
    raw = encode(record)
    header = decode_header(raw)
    assert (header.kind, header.partition, header.first, header.next, header.snap) == (
        Kind.BATCH,
        2,
        40,
        45,
        7,
    )
    assert header.states == {}
    assert header.rows == {}
    back = decode(raw)
    assert back.states == record.states
    assert back.source_ts == [11, 12]
    assert back.rows[schema.TOUCHPOINT_EVENTS.name] == [["live", "e-1", "c-1", 5]]
    assert back.rows[schema.BAD_EVENTS.name] == [list(bad)]


def test_the_chain_counts_a_batch_once_when_it_was_written_twice() -> None:
    """A worker killed after publishing folds the same input again: the second copy of a span
    does not count, nor does a batch that does not start where the chain is."""
    chain = Chain()
    assert chain.accepts(_batch(0, 10, {}))
    assert not chain.accepts(_batch(0, 12, {}))  # the same input again, other boundaries
    assert chain.accepts(_batch(10, 20, {}))
    assert not chain.accepts(_batch(12, 25, {}))
    assert chain.accepts(_batch(20, 20, {}))  # timeouts only: an empty input span
    assert chain.next == 20


def test_recovery_starts_from_the_last_complete_snapshot_and_follows_the_chain() -> None:
    """States after a complete snapshot are the snapshot's plus the counted batches after it; an
    incomplete snapshot (writer killed mid-way) and a doubled batch change nothing."""
    replayer = Replayer()
    records = [
        _batch(0, 10, {"a": b"a1", "b": b"b1"}),
        Record(
            Kind.SNAPSHOT,
            2,
            next=10,
            stream_time=100,
            states={"a": b"a1"},
            snapshot_id="s",
            chunk=0,
            chunks=2,
        ),
        Record(
            Kind.SNAPSHOT,
            2,
            next=10,
            stream_time=100,
            states={"b": b"b1"},
            snapshot_id="s",
            chunk=1,
            chunks=2,
        ),
        _batch(10, 15, {"a": b"a2"}),
        _batch(10, 14, {"a": b"stale"}),
        Record(Kind.SNAPSHOT, 2, next=15, states={"a": b"a2"}, snapshot_id="t", chunk=0, chunks=2),
        Record(Kind.PROGRESS, 2, stream_time=999),
        _batch(15, 18, {"c": b"c1"}),
    ]
    for offset, record in enumerate(records):
        replayer.offer(offset, encode(record))
    result = replayer.result
    assert result.states == {"a": b"a2", "b": b"b1", "c": b"c1"}
    assert result.next == 18
    assert result.stream_time == 180


def test_the_offset_guard_folds_each_offset_once_and_sees_gaps() -> None:
    """After recovery at offset 10: 8 is a redelivery, 10 is folded, 13 means 11..12 were skipped."""
    guard = OffsetGuard()
    guard.recovered(0, 10)
    assert guard.check(0, 8) is Verdict.SEEN
    assert guard.check(0, 10) is Verdict.FOLD
    guard.folded(0, 10)
    assert guard.check(0, 13) is Verdict.GAP
    for offset in (11, 12, 13):
        guard.folded(0, offset)
    assert guard.span(0) == (10, 14)
    guard.close_batch()
    assert guard.span(0) == (14, 14)


def test_an_erased_customer_is_not_recovered_from_earlier_records_or_snapshots() -> None:
    """A batch marking a customer erased drops the state earlier batches and a snapshot gave it;
    a state the same batch carries (events after the erasure) is the one that counts. The marker
    is a hash: the record holds no id."""
    snapshot = Record(Kind.SNAPSHOT, 2, next=10, states={"gone": b"g1", "kept": b"k1"}, snapshot_id="s")
    erasing = _batch(10, 20, {"kept": b"k2"})
    erasing.erased = [erased_key("gone"), erased_key("back")]
    raw = encode(erasing)
    assert b"gone" not in raw
    assert decode_header(raw).erased == erasing.erased
    replayer = Replayer()
    replayer.offer(0, encode(_batch(0, 10, {"back": b"b1", "gone": b"g0"})))
    replayer.offer(1, encode(snapshot))
    replayer.offer(2, raw)
    assert replayer.result.states == {"kept": b"k2"}
    again = _batch(20, 30, {"back": b"b2"})
    again.erased = [erased_key("back")]  # erased, then a new event in the same batch
    replayer.offer(3, encode(again))
    assert replayer.result.states == {"kept": b"k2", "back": b"b2"}
