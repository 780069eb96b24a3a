"""ColumnBatch: a drain's engine rows as Arrow record batches, the few other rows as tuples."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from projections import schema
from projections.engine import RowBatch
from projections.rows import Row
from streams.store.arrow_rows import native_record_batch

TABLES = {table.name: table for table in schema.TABLES}


@dataclass(slots=True)
class ColumnBatch:
    """What one drain of the native engine writes: per table, Arrow record batches (`arrow`, built
    from the core's column buffers with no Python object per row) and tuple rows (`rows`: the
    quarantine, kept states, alerts). Stores write the Arrow part in one insert per table."""

    arrow: dict[str, list[pa.RecordBatch]] = field(default_factory=dict)
    rows: RowBatch = field(default_factory=RowBatch)

    @classmethod
    def of_native(cls, tables: Mapping[str, tuple[int, Sequence[tuple[object, ...]]]]) -> ColumnBatch:
        """The batch of a native drain's column buffers ({table: (row count, columns)})."""
        batch = cls()
        for name, (count, columns) in tables.items():
            batch.add_arrow(TABLES[name], native_record_batch(TABLES[name], count, columns))
        return batch

    def add_states(self, scenario: str, states: Sequence[tuple[str, bytes, int]]) -> None:
        """Add journey_state rows for (customer_id, state_codec bytes, revision) as one record batch."""
        if not states:
            return
        customers, raws, revisions = zip(*states, strict=True)
        arrays = [
            pa.array([scenario] * len(states), pa.string()),
            pa.array(customers, pa.string()),
            pa.array(raws, pa.binary()),  # state bytes: ClickHouse reads Arrow binary into String
            pa.array(revisions, pa.uint64()),
            pa.array([0] * len(states), pa.uint8()),
        ]
        self.add_arrow(
            schema.JOURNEY_STATE, pa.record_batch(arrays, names=list(schema.JOURNEY_STATE.column_names))
        )

    def add(self, table: schema.Table, row: Row) -> None:
        """Append one tuple row to a table."""
        self.rows.add(table, row)

    def add_arrow(self, table: schema.Table, batch: pa.RecordBatch) -> None:
        """Append a record batch of a table (columns in the table's order)."""
        if batch.num_rows:
            self.arrow.setdefault(table.name, []).append(batch)

    def extend(self, other: ColumnBatch | RowBatch) -> None:
        """Append another batch's rows (after this batch's, table by table)."""
        if isinstance(other, RowBatch):
            self.rows.extend(other)
            return
        for name, batches in other.arrow.items():
            self.arrow.setdefault(name, []).extend(batches)
        self.rows.extend(other.rows)

    def table_rows(self, table: schema.Table, only: Collection[str] | None = None) -> list[Row]:
        """A table's rows as the Python engine's tuples (Arrow rows first, times as integer ms);
        with `only`, the Arrow rows hold None in the other columns (saves converting them)."""
        out: list[Row] = []
        for batch in self.arrow.get(table.name, ()):
            out.extend(arrow_rows(batch, only))
        out.extend(self.rows.rows.get(table.name, ()))
        return out

    def table_columns(self, table: schema.Table, only: Collection[str]) -> dict[str, list[Any]]:
        """The `only` columns of a table (those it has) as lists valued as table_rows's: Arrow rows
        first, then the tuple rows; no tuple per row is built."""
        names = [name for name in table.column_names if name in only]
        out: dict[str, list[Any]] = {name: [] for name in names}
        for batch in self.arrow.get(table.name, ()):
            for name in names:
                column = batch.column(name)
                values = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
                out[name].extend(values.to_pylist())
        rows = self.rows.rows.get(table.name, ())
        if rows:
            index = {name: i for i, name in enumerate(table.column_names)}
            for name in names:
                i = index[name]
                out[name].extend(row[i] for row in rows)
        return out

    def __len__(self) -> int:
        in_arrow = sum(int(b.num_rows) for batches in self.arrow.values() for b in batches)
        return in_arrow + len(self.rows)


def arrow_rows(batch: pa.RecordBatch | pa.Table, only: Collection[str] | None = None) -> list[Row]:
    """The rows of a record batch as tuples valued as the engines' rows: times as integer
    milliseconds, arrays as lists, absent values as None (and the columns not in `only`, if given)."""
    columns: list[list[Any]] = []
    absent = [None] * batch.num_rows
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if only is not None and name not in only:
            columns.append(absent)
            continue
        values = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
        columns.append(values.to_pylist())
    return list(zip(*columns, strict=True)) if columns else []


def rows_of(
    batch: RowBatch | ColumnBatch, tables: Iterable[schema.Table], only: Collection[str] | None = None
) -> dict[str, list[Row]]:
    """Some tables' rows of either kind of batch as tuples (what row-by-row readers such as the
    friction detector take); `only` as in ColumnBatch.table_rows."""
    if isinstance(batch, RowBatch):
        return {table.name: batch.rows.get(table.name, []) for table in tables}
    return {table.name: batch.table_rows(table, only) for table in tables}


def columns_of(
    batch: RowBatch | ColumnBatch, tables: Iterable[schema.Table], only: Collection[str]
) -> dict[str, dict[str, list[Any]]]:
    """Some tables' `only` columns of either kind of batch, column by column ({table: {column:
    values}}, valued as rows_of's rows): what bulk readers such as the friction detector take."""
    if isinstance(batch, ColumnBatch):
        return {table.name: batch.table_columns(table, only) for table in tables}
    out: dict[str, dict[str, list[Any]]] = {}
    for table in tables:
        rows = batch.rows.get(table.name, ())
        out[table.name] = {
            name: [row[i] for row in rows] for i, name in enumerate(table.column_names) if name in only
        }
    return out


def merged(first: RowBatch | ColumnBatch, then: RowBatch | ColumnBatch) -> RowBatch | ColumnBatch:
    """One batch holding `first`'s rows then `then`'s (first is extended in place when it can be)."""
    if isinstance(first, ColumnBatch):
        first.extend(then)
        return first
    if isinstance(then, RowBatch):
        first.extend(then)
        return first
    combined = ColumnBatch(rows=first)
    combined.extend(then)
    return combined
