"""The named row builders name their table's columns, in insert order."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from projections import rows, schema
from projections.rows import Row

BUILDERS: list[tuple[Callable[..., Row], schema.Table]] = [
    (rows.touchpoint_event_row, schema.TOUCHPOINT_EVENTS),
    (rows.journey_instance_row, schema.JOURNEY_INSTANCES),
    (rows.deviation_row, schema.DEVIATIONS),
    (rows.friction_signal_row, schema.FRICTION_SIGNALS),
    (rows.delight_signal_row, schema.DELIGHT_SIGNALS),
    (rows.support_attribution_row, schema.SUPPORT_ATTRIBUTION),
]


@pytest.mark.parametrize(("builder", "table"), BUILDERS, ids=[table.name for _, table in BUILDERS])
def test_each_named_value_lands_in_its_column(builder: Callable[..., Row], table: schema.Table) -> None:
    names = list(inspect.signature(builder).parameters)
    assert names == list(table.column_names)
    # Each value lands in the column of its name: the same row the schema's by-name builder makes.
    values = {name: f"<{name}>" for name in names}
    assert builder(**values) == table.row(**values)
