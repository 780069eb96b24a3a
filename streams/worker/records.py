"""Per-batch records on journey-events: a batch's rows and states, snapshots, progress; the chain rule."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from projections import schema

Row = Sequence[Any]  # a projection row: a tuple from the engine, a list once decoded

MAGIC = b"TPB1"  # a journey-events record of this format (older per-customer messages are JSON)
_HEAD = struct.Struct(">I")
_BAD = schema.BAD_EVENTS.name
_RAW = len(schema.BAD_EVENTS.columns) - 1  # bad_events.raw: bytes, carried as base64 in JSON


class Kind(StrEnum):
    """What a record on the journey-events topic holds."""

    BATCH = "batch"  # rows and changed states of one input batch of one partition
    SNAPSHOT = "snapshot"  # one chunk of every state of a partition, at a point of its chain
    PROGRESS = "progress"  # the input partition's event time moved (an idle partition's heartbeat)


@dataclass(slots=True)
class Record:
    """One record of a journey-events partition (the partition number is the input partition's).

    A batch covers the input offsets [first, next) of its partition; states are the customers'
    states after it (encoded by projections.state_codec). `snap` is the offset on this partition of
    the first chunk of the latest complete snapshot the writer knew of (-1: none yet), so the last
    record of a partition says where recovery starts reading.
    """

    kind: Kind
    partition: int
    first: int = -1
    next: int = -1
    stream_time: int | None = None
    snap: int = -1
    rows: Mapping[str, Sequence[Row]] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)
    source_ts: list[int] = field(default_factory=list)  # arrival times (ms) of the input records
    snapshot_id: str = ""  # SNAPSHOT: which snapshot a chunk belongs to, and its place in it
    chunk: int = 0
    chunks: int = 1
    erased: list[str] = field(default_factory=list)  # BATCH: erased customers (erased_key of each)


def encode(record: Record) -> bytes:
    """MAGIC, a JSON header, then a zlib-compressed body of rows (JSON) and states (length-framed)."""
    header: dict[str, object] = {
        "k": record.kind.value,
        "p": record.partition,
        "f": record.first,
        "n": record.next,
        "t": record.stream_time,
        "s": record.snap,
        "ts": record.source_ts,
        "id": record.snapshot_id,
        "c": record.chunk,
        "cs": record.chunks,
    }
    if record.erased:
        header["e"] = record.erased
    rows = record.rows
    if rows.get(_BAD):
        rows = {**rows, _BAD: [_bad_out(row) for row in rows[_BAD]]}
    parts = [_framed(orjson.dumps(rows) if rows else b"")]
    for customer_id, state in record.states.items():
        parts.append(_framed(customer_id.encode()))
        parts.append(_framed(state))
    head = orjson.dumps(header)
    return MAGIC + _framed(head) + zlib.compress(b"".join(parts), 1)


def decode_header(raw: bytes) -> Record:
    """The record without rows and states (cheap: nothing is decompressed)."""
    if raw[:4] != MAGIC:
        msg = f"not a touchpath batch record (starts with {raw[:8]!r})"
        raise ValueError(msg)
    (size,) = _HEAD.unpack_from(raw, 4)
    h = orjson.loads(raw[8 : 8 + size])
    return Record(
        Kind(h["k"]), h["p"], h["f"], h["n"], h["t"], h["s"], source_ts=h["ts"],
        snapshot_id=h["id"], chunk=h["c"], chunks=h["cs"], erased=h.get("e", []),
    )  # fmt: skip


def decode(raw: bytes, *, rows: bool = True, states: bool = True) -> Record:
    """The whole record (rows and/or states as asked)."""
    record = decode_header(raw)
    (size,) = _HEAD.unpack_from(raw, 4)
    body = zlib.decompress(raw[8 + size :])
    frames = _frames(body)
    rows_json = next(frames)
    if rows and rows_json:
        decoded: dict[str, list[Row]] = orjson.loads(rows_json)
        if decoded.get(_BAD):
            decoded[_BAD] = [_bad_in(row) for row in decoded[_BAD]]
        record.rows = decoded
    if states:
        for customer_id in frames:
            record.states[customer_id.decode()] = next(frames)
    return record


def erased_key(customer_id: str) -> str:
    """How a batch record names a customer it erased: the SHA-256 (hex) of the id, as the store's
    erasure audit does, so the marker holds no id."""
    return hashlib.sha256(customer_id.encode()).hexdigest()


def is_batch_record(raw: bytes) -> bool:
    """Whether a journey-events value is in this format."""
    return raw[:4] == MAGIC


def _framed(data: bytes) -> bytes:
    return _HEAD.pack(len(data)) + data


def _frames(body: bytes) -> Iterator[bytes]:
    at, end = 0, len(body)
    while at < end:
        (size,) = _HEAD.unpack_from(body, at)
        yield body[at + 4 : at + 4 + size]
        at += 4 + size


def _bad_out(row: Row) -> list[Any]:
    out = list(row)
    raw = out[_RAW]
    out[_RAW] = base64.b64encode(raw if isinstance(raw, bytes) else str(raw).encode()).decode()
    return out


def _bad_in(row: Row) -> list[Any]:
    out = list(row)
    out[_RAW] = base64.b64decode(out[_RAW])
    return out


class Chain:
    """Which batches of one partition count: a batch counts when it starts where the last counted
    one ended (its `first` is the chain's `next`). The journey worker that recovers a partition and
    the loader apply the same rule, so they agree on the partition's history even when a batch was
    written twice (a worker killed after publishing, whose input was folded again) or by a stale
    owner after a rebalance. Before any counted batch the chain takes the first one it sees."""

    def __init__(self, next_offset: int | None = None) -> None:
        self.next = next_offset

    def accepts(self, record: Record) -> bool:
        """Whether the batch counts; if so the chain moves to its end."""
        if record.kind is not Kind.BATCH:
            return False
        if self.next is not None and record.first != self.next:
            return False
        self.next = record.next
        return True


@dataclass(slots=True)
class Recovered:
    """A partition's journey states as its records leave them."""

    states: dict[str, bytes] = field(default_factory=dict)
    next: int | None = None  # the next input offset to fold (None: nothing folded yet)
    stream_time: int | None = None
    snap: int = -1  # where the latest complete snapshot starts (-1: none)
    last_offset: int | None = None  # offset of the partition's last record when it was read


class Replayer:
    """Folds a partition's records from a snapshot (or its start) into the states they leave."""

    def __init__(self) -> None:
        self.result = Recovered()
        self.chain = Chain()
        self._snapshot: tuple[str, dict[str, bytes], int] | None = None  # id, states so far, chunks seen

    def offer(self, offset: int, raw: bytes) -> None:
        """One record, in offset order."""
        if not is_batch_record(raw):
            return  # a per-customer message of the earlier format: not part of this history
        header = decode_header(raw)
        result = self.result
        if header.kind is Kind.PROGRESS:
            return
        if header.kind is Kind.SNAPSHOT:
            if header.chunk == 0:
                self._snapshot = (header.snapshot_id, {}, 0)
            if self._snapshot is None or self._snapshot[0] != header.snapshot_id:
                return
            snapshot_id, states, seen = self._snapshot
            states.update(decode(raw, rows=False).states)
            self._snapshot = (snapshot_id, states, seen + 1)
            if header.chunk == header.chunks - 1 and seen + 1 == header.chunks:
                # A complete snapshot replaces everything before it (it is taken between batches).
                result.states = states
                result.next = header.next if header.next >= 0 else None
                result.stream_time = header.stream_time
                self.chain = Chain(result.next)
                self._snapshot = None
            return
        if self.chain.accepts(header):
            if header.erased:
                # Erased in this batch (before any state the batch carries for them, which is newer).
                erased = set(header.erased)
                for customer_id in [c for c in result.states if erased_key(c) in erased]:
                    del result.states[customer_id]
            result.states.update(decode(raw, rows=False).states)
            result.next = header.next
            if header.stream_time is not None:
                result.stream_time = max(result.stream_time or header.stream_time, header.stream_time)
