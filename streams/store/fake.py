"""An in-memory projection store with ClickHouse's read semantics, for tests that need no chDB."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from projections import schema
from streams.store.clickhouse import StoreError
from streams.store.columns import ColumnBatch, arrow_rows
from streams.store.protocol import write_batch

if TYPE_CHECKING:
    from projections.engine import RowBatch

_EPOCH = datetime(1970, 1, 1)  # naive: clickhouse-connect returns naive UTC times, so does this store
# The one kind of SQL this store answers: counts, as the runner's callers and tests ask them.
_COUNT = re.compile(
    r"^\s*SELECT\s+count\(\)\s+FROM\s+(\w+)(\s+FINAL)?(\s+WHERE\s+scenario\s*=\s*\{(\w+):String\})?\s*$",
    re.IGNORECASE,
)


class InMemoryProjectionStore:
    """The projection tables as lists of rows; reads apply ReplacingMergeTree's FINAL.

    Semantics kept from ClickHouse: the last row per sort key wins (highest version where the table
    is versioned, later insert on a tie), a versioned row with is_deleted = 1 hides its key, and an
    insert repeating an earlier insert's token is a no-op.
    """

    def __init__(self, description: str = "in-memory store") -> None:
        self.description = description
        self.tables: dict[str, list[tuple[object, ...]]] = {}
        self._tokens: set[str] = set()
        self._known = {table.name: table for table in schema.TABLES}
        self.closed = False

    def create_schema(self) -> None:
        """Every projection table, empty where new."""
        for table in schema.TABLES:
            self.tables.setdefault(table.name, [])

    def write(self, batch: RowBatch | ColumnBatch) -> int:
        """Insert a batch table by table; returns the rows written."""
        return write_batch(batch, self.insert_rows, self.insert_arrow)

    def insert_arrow(self, table: schema.Table, data: pa.Table, token: str | None = None) -> None:
        """Append an Arrow table's rows as the engines' tuples (times as integer ms)."""
        if data.num_columns != len(table.columns):
            width = len(table.columns)
            msg = f"insert into {table.name} failed: {data.num_columns} columns, the table has {width}"
            raise StoreError(msg)
        self.insert_rows(table, arrow_rows(data), token)

    def insert_rows(
        self, table: schema.Table, rows: Sequence[tuple[object, ...]], token: str | None = None
    ) -> None:
        """Append rows; a token seen before makes the insert a no-op."""
        if table.name not in self.tables:
            msg = f"insert of {len(rows)} rows into {table.name} failed: no such table (create_schema first)"
            raise StoreError(msg)
        width = len(table.columns)
        for row in rows:
            if len(row) != width:
                msg = f"insert into {table.name} failed: a row of {len(row)} values, the table has {width}"
                raise StoreError(msg)
        if token is not None:
            if token in self._tokens:
                return
            self._tokens.add(token)
        self.tables[table.name].extend(tuple(row) for row in rows)

    def query(
        self, sql: str, parameters: dict[str, object] | None = None, *, readonly: bool = True
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Answers `SELECT count() FROM t [FINAL] [WHERE scenario = {p:String}]` only."""
        match = _COUNT.match(sql)
        if match is None or match.group(1) not in self._known:
            asked = " ".join(sql.split())
            msg = f"the in-memory store answers only counts of a projection table, not: {asked}"
            raise StoreError(msg)
        table = self._known[match.group(1)]
        scenario = None if match.group(4) is None else str((parameters or {})[match.group(4)])
        if match.group(2):
            count = sum(1 for _ in self._final(table, scenario))
        else:
            stored = self.tables.get(table.name, [])
            count = sum(1 for row in stored if scenario is None or row[0] == scenario)
        return ["count()"], [(count,)]

    def scalar(self, sql: str, parameters: dict[str, object] | None = None) -> Any:
        """The first value of the first row."""
        _, rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def stored_event_ids(self, scenario: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids the scenario's touchpoint_events holds already."""
        wanted = set(event_ids)
        return {
            str(row[1])
            for row in self.tables.get(schema.TOUCHPOINT_EVENTS.name, [])
            if row[0] == scenario and row[1] in wanted
        }

    def journey_states(self, scenario: str) -> list[bytes]:
        """The encoded journey states kept for a scenario."""
        column = schema.JOURNEY_STATE.column_names.index("state")
        return [_as_bytes(row[column]) for row in self._final(schema.JOURNEY_STATE, scenario)]

    def rows(self, table: schema.Table, scenario: str) -> list[dict[str, Any]]:
        """A table's rows of one scenario under FINAL, valued as ClickHouse returns them."""
        times = {name for name, kind in table.columns if kind.startswith("DateTime64")}
        return [
            {
                name: _as_time(value) if name in times else _as_text(value)
                for name, value in zip(table.column_names, row, strict=True)
            }
            for row in self._final(table, scenario)
        ]

    def close(self) -> None:
        """Nothing to release; later calls still work (the tables stay for the test to read)."""
        self.closed = True

    def _final(self, table: schema.Table, scenario: str | None) -> list[tuple[object, ...]]:
        names = table.column_names
        key_at = [names.index(name) for name in table.order_by]
        version_at = names.index("version") if table.versioned else None
        latest: dict[tuple[object, ...], tuple[object, ...]] = {}
        for row in self.tables.get(table.name, []):
            if scenario is not None and row[0] != scenario:
                continue
            key = tuple(row[i] for i in key_at)
            known = latest.get(key)
            # The highest version wins; on a tie (and in unversioned tables) the later insert.
            if known is None or _newer(row, known, version_at):
                latest[key] = row
        kept = [row for row in latest.values() if version_at is None or not row[names.index("is_deleted")]]
        return [kept_row for _, kept_row in sorted((_sort_key(row, key_at), row) for row in kept)]


def _newer(row: tuple[object, ...], known: tuple[object, ...], version_at: int | None) -> bool:
    return version_at is None or int(str(row[version_at])) >= int(str(known[version_at]))


def _sort_key(row: tuple[object, ...], key_at: list[int]) -> tuple[str, ...]:
    return tuple(str(row[i]) for i in key_at)


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _as_time(value: object) -> object:
    if isinstance(value, int):
        return _EPOCH + timedelta(milliseconds=value)
    return value
