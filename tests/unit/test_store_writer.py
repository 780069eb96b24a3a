"""The writer thread of `run`: batches reach the store in order, queued ones together, errors surface."""

from __future__ import annotations

import threading

import pytest

from projections import schema
from projections.engine import RowBatch
from streams.store.clickhouse import StoreError
from streams.store.columns import ColumnBatch
from streams.store.fake import InMemoryProjectionStore
from streams.store.writer import BackgroundWriter


def _bad(position: int) -> tuple[object, ...]:
    return ("live", "f", position, "malformed_json", None, "", "{")


class _GatedStore(InMemoryProjectionStore):
    """Holds its first write until released, counting writes."""

    def __init__(self) -> None:
        super().__init__()
        self.create_schema()
        self.gate = threading.Event()
        self.writes = 0

    def write(self, batch: RowBatch | ColumnBatch) -> int:
        self.gate.wait(timeout=30)
        self.writes += 1
        return super().write(batch)


def _batch(position: int) -> ColumnBatch:
    batch = ColumnBatch()
    batch.add(schema.BAD_EVENTS, _bad(position))
    return batch


def test_batches_queued_behind_a_slow_write_go_out_together_in_order() -> None:
    store = _GatedStore()
    writer = BackgroundWriter(store, depth=8)
    for position in range(1, 6):
        writer.submit(_batch(position))
    store.gate.set()
    assert writer.close() == 5
    assert [row[2] for row in store.tables["bad_events"]] == [1, 2, 3, 4, 5]
    assert store.writes < 5, "the batches that waited were merged into fewer writes"


def test_a_failed_write_is_raised_in_the_callers_thread() -> None:
    store = InMemoryProjectionStore()  # no create_schema: every insert fails
    writer = BackgroundWriter(store)
    writer.submit(_batch(1))
    with pytest.raises(StoreError, match="no such table"):
        writer.wait()
    writer.close()
