"""The store seam: what the shells need from a projection store, whatever holds the tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from projections import schema

if TYPE_CHECKING:
    from projections.engine import RowBatch


class ProjectionStore(Protocol):
    """Projection tables that take row batches idempotently and answer the runner's reads.

    Implemented by streams.store.clickhouse.ClickHouseProjectionStore (chDB or a server) and by
    streams.store.fake.InMemoryProjectionStore (tests, no ClickHouse); both pass
    tests/unit/test_store_contract.py. Replay's bulk paths (Arrow streams, INSERT ... SELECT) are
    ClickHouse's own and stay on that class.
    """

    description: str

    def create_schema(self) -> None:
        """Create the projection tables if missing (safe on every start)."""
        ...

    def write(self, batch: RowBatch) -> int:
        """Insert a batch table by table; returns the rows written."""
        ...

    def insert_rows(
        self, table: schema.Table, rows: Sequence[tuple[object, ...]], token: str | None = None
    ) -> None:
        """Insert rows of one table; a repeated token makes the insert a no-op (a retried batch)."""
        ...

    def query(
        self, sql: str, parameters: dict[str, object] | None = None, *, readonly: bool = True
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one of touchpath's own read queries: (column names, rows)."""
        ...

    def scalar(self, sql: str, parameters: dict[str, object] | None = None) -> Any:
        """The first value of the first row of a query."""
        ...

    def stored_event_ids(self, scenario: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids the scenario's touchpoint_events holds already."""
        ...

    def journey_states(self, scenario: str) -> list[bytes]:
        """The encoded journey states kept for a scenario."""
        ...

    def rows(self, table: schema.Table, scenario: str) -> list[dict[str, Any]]:
        """A table's rows of one scenario as analysts read them (FINAL, deleted rows left out)."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def write_batch(
    batch: RowBatch, insert_rows: Callable[[schema.Table, Sequence[tuple[object, ...]]], None]
) -> int:
    """Insert a batch table by table, in the schema's order, through an adapter's insert_rows;
    returns the rows written (every adapter's write())."""
    written = 0
    for table in schema.TABLES:
        rows = batch.rows.get(table.name)
        if rows:
            insert_rows(table, rows)
            written += len(rows)
    return written
