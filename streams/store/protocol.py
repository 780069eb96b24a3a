"""The store seam: what the shells need from a projection store, whatever holds the tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from projections import schema

if TYPE_CHECKING:  # pyarrow and the engine load only where rows are written, not for a query
    import pyarrow as pa

    from projections.engine import RowBatch
    from streams.store.columns import ColumnBatch


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

    def write(self, batch: RowBatch | ColumnBatch) -> int:
        """Insert a batch table by table (a ColumnBatch's Arrow rows in one insert per table);
        returns the rows written."""
        ...

    def insert_rows(
        self, table: schema.Table, rows: Sequence[tuple[object, ...]], token: str | None = None
    ) -> None:
        """Insert rows of one table; a repeated token makes the insert a no-op (a retried batch)."""
        ...

    def insert_arrow(self, table: schema.Table, data: pa.Table, token: str | None = None) -> None:
        """Insert an Arrow table of one projection table's rows (columns in its order, times as
        timestamp[ms, UTC]); the same rows as insert_rows would store, the same token semantics."""
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
    batch: RowBatch | ColumnBatch,
    insert_rows: Callable[[schema.Table, Sequence[tuple[object, ...]]], None],
    insert_arrow: Callable[[schema.Table, pa.Table], None],
) -> int:
    """Insert a batch table by table, in the schema's order, through an adapter's insert_rows and
    insert_arrow (a table's Arrow rows in one insert, before its tuple rows); returns the rows
    written (every adapter's write())."""
    import pyarrow as pa  # noqa: PLC0415 -- see the imports

    from streams.store.columns import ColumnBatch  # noqa: PLC0415

    arrow = batch.arrow if isinstance(batch, ColumnBatch) else {}
    tuples = batch.rows.rows if isinstance(batch, ColumnBatch) else batch.rows
    written = 0
    for table in schema.TABLES:
        batches = arrow.get(table.name)
        if batches:
            data = pa.Table.from_batches(batches)
            insert_arrow(table, data)
            written += data.num_rows
        rows = tuples.get(table.name)
        if rows:
            insert_rows(table, rows)
            written += len(rows)
    return written
