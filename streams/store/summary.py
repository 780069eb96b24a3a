"""What a run found, read back from the projections: conformance, deviations, friction, drivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.store.clickhouse import ClickHouseProjectionStore

QUERIES: dict[str, tuple[str, str]] = {
    "conformance": (
        "Conformance per persona and journey",
        """SELECT persona, journey_id || '@' || toString(journey_version) AS journey,
       count() AS instances, countIf(status = 'completed') AS completed,
       countIf(status = 'abandoned') AS abandoned, countIf(status = 'in_progress') AS in_progress,
       round(100 * countIf(cost = 0) / count(), 1) AS conformant_pct,
       round(avg(fitness), 3) AS mean_fitness
FROM journey_instances FINAL WHERE scenario = {scenario:String}
GROUP BY persona, journey ORDER BY persona, journey""",
    ),
    "deviations": (
        "Top deviations",
        """SELECT kind, step, touchpoint, count() AS deviations, uniqExact(customer_id) AS customers
FROM deviations FINAL WHERE scenario = {scenario:String}
GROUP BY kind, step, touchpoint ORDER BY deviations DESC, kind, step, touchpoint LIMIT {limit:UInt32}""",
    ),
    "friction": (
        "Top friction touchpoints",
        """SELECT touchpoint, owner_team, count() AS signals, round(sum(weight), 1) AS weight,
       uniqExact(customer_id) AS customers,
       arrayStringConcat(arraySort(groupUniqArray(kind)), ',') AS kinds
FROM friction_signals FINAL WHERE scenario = {scenario:String}
GROUP BY touchpoint, owner_team ORDER BY weight DESC, touchpoint LIMIT {limit:UInt32}""",
    ),
    "support_drivers": (
        "Top support-contact drivers (upstream touchpoint)",
        """SELECT ifNull(upstream_touchpoint, '(none)') AS upstream_touchpoint,
       ifNull(upstream_owner_team, '') AS owner_team, rule, count() AS contacts
FROM support_attribution FINAL WHERE scenario = {scenario:String}
GROUP BY upstream_touchpoint, owner_team, rule ORDER BY contacts DESC, upstream_touchpoint
LIMIT {limit:UInt32}""",
    ),
    "bad": (
        "Quarantined input by reason",
        """SELECT reason, count() AS lines, any(detail) AS example
FROM bad_events FINAL WHERE scenario = {scenario:String} GROUP BY reason ORDER BY lines DESC""",
    ),
}


@dataclass(frozen=True, slots=True)
class Section:
    """One titled result table."""

    key: str
    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


def summarise(store: ClickHouseProjectionStore, scenario: str = "live", limit: int = 10) -> list[Section]:
    """Every summary section for a scenario."""
    out = []
    for key, (title, sql) in QUERIES.items():
        columns, rows = store.query(sql, {"scenario": scenario, "limit": limit})
        out.append(Section(key, title, columns, rows))
    return out


def render_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [columns, *[["" if value is None else str(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
