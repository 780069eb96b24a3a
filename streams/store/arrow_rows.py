"""Projection rows as Arrow IPC bytes: encoded where they are rendered, inserted with no Python work."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

import pyarrow as pa

from projections import schema

if TYPE_CHECKING:
    from streams.store.clickhouse import ClickHouseProjectionStore

_WRAPPERS = re.compile(r"^(LowCardinality|Nullable)\((.*)\)$")
_SCALARS: dict[str, pa.DataType] = {
    "String": pa.string(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    schema.TS: pa.timestamp("ms", tz="UTC"),  # the engine's times are integer milliseconds
}


def arrow_type(clickhouse_type: str) -> pa.DataType | None:
    """The Arrow type ClickHouse reads into this column type, or None when there is no plain one."""
    inner = clickhouse_type
    while (match := _WRAPPERS.match(inner)) is not None:
        inner = match.group(2)
    if inner.startswith("Array(") and inner.endswith(")"):
        item = arrow_type(inner[6:-1])
        return None if item is None else pa.list_(item)
    return _SCALARS.get(inner)


@cache
def arrow_schema(table: schema.Table) -> pa.Schema | None:
    """The table's Arrow schema, or None if a column has no Arrow equivalent here (e.g. Map)."""
    fields = []
    for name, kind in table.columns:
        column_type = arrow_type(kind)
        if column_type is None:
            return None
        fields.append(pa.field(name, column_type))
    return pa.schema(fields)


def encode_rows(table: schema.Table, rows: Sequence[tuple[object, ...]]) -> bytes | None:
    """One Arrow IPC stream holding the rows, or None when the table has no Arrow schema."""
    table_schema = arrow_schema(table)
    if table_schema is None:
        return None
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, table_schema, strict=True)]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table_schema) as writer:
        writer.write_batch(pa.record_batch(arrays, schema=table_schema))
    return bytes(sink.getvalue().to_pybytes())


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """One Arrow IPC stream holding the record batch."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode(blob: bytes) -> pa.Table:
    """The Arrow table in an IPC stream."""
    return pa.ipc.open_stream(blob).read_all()


def insert_arrow(
    store: ClickHouseProjectionStore, table: schema.Table, data: pa.Table, settings: Mapping[str, object]
) -> None:
    """Insert an Arrow table; ClickHouse parses it, so this costs the caller almost no CPU."""
    store.insert_arrow_stream(table, ipc_stream(data), data.num_rows, settings)


def ipc_stream(data: pa.Table) -> bytes:
    """The Arrow table as one IPC stream (what ClickHouse's ArrowStream format reads)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue().to_pybytes())


# Arrow types of the native core's column buffers (projections.native_engine.NativeEngine.drain_columns).
_NATIVE_TYPES: dict[str, pa.DataType] = {
    "i64": pa.int64(),
    "i16": pa.int16(),
    "u8": pa.uint8(),
    "u16": pa.uint16(),
    "u32": pa.uint32(),
    "u64": pa.uint64(),
    "f64": pa.float64(),
}


def _native_array(rows: int, column: tuple[object, ...], target: pa.DataType) -> pa.Array:
    tag, validity, *buffers = column
    valid = None if validity is None else pa.py_buffer(validity)
    data = [pa.py_buffer(buffer) for buffer in buffers]
    if tag == "str":
        array = pa.Array.from_buffers(pa.string(), rows, [valid, *data])
    elif tag == "list<str>":
        items = pa.Array.from_buffers(pa.string(), len(data[1]) // 4 - 1, [None, data[1], data[2]])
        array = pa.Array.from_buffers(pa.list_(pa.string()), rows, [None, data[0]], children=[items])
    else:
        array = pa.Array.from_buffers(_NATIVE_TYPES[str(tag)], rows, [valid, *data])
    # Times are milliseconds and a few integers are narrower in the table: one vectorised cast.
    return array if array.type == target else array.cast(target)


def native_record_batch(
    table: schema.Table, rows: int, columns: Sequence[tuple[object, ...]]
) -> pa.RecordBatch:
    """The record batch of one table's native column buffers (no Python object per row)."""
    table_schema = arrow_schema(table)
    if table_schema is None:
        msg = f"{table.name} has no Arrow schema"
        raise ValueError(msg)
    arrays = [
        _native_array(rows, column, field.type) for column, field in zip(columns, table_schema, strict=True)
    ]
    return pa.record_batch(arrays, schema=table_schema)
