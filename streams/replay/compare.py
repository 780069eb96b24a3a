"""compare's shell: reads two stored scenarios, renders their comparison (pure part: projections.diff)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections import schema
from projections.diff.scenarios import (
    Comparison,
    InstanceChanges,
    ScenarioFigures,
    TableIdentity,
    compare_figures,
    customer_changes,
)
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.scenarios import ScenarioError, check_name, list_scenarios, scenario_tables
from streams.store.summary import render_table

SAMPLE_CUSTOMERS = 12
IDENTITY_TABLES = schema.JOURNEY_PROJECTIONS
# Row versions count revisions, not content; a redesign bumps `journey_version` on every row of its
# journey, which would make every such row "differ" and hide the rows whose content really changed.
IGNORED_COLUMNS = frozenset({"scenario", "version", "is_deleted", "journey_version"})

CONFORMANCE_SQL = """SELECT persona, journey_id, arraySort(groupUniqArray(journey_version)) AS versions,
       count() AS instances, countIf(cost = 0) AS conformant, avg(fitness) AS mean_fitness,
       countIf(status = 'completed') AS completed, countIf(status = 'abandoned') AS abandoned
FROM journey_instances FINAL WHERE scenario = {scenario:String}
GROUP BY persona, journey_id"""
DEVIATIONS_SQL = """SELECT persona, kind, step, touchpoint, count() AS deviations,
       uniqExact(customer_id) AS customers
FROM deviations FINAL WHERE scenario = {scenario:String}
GROUP BY persona, kind, step, touchpoint"""
FRICTION_SQL = """SELECT touchpoint, any(owner_team) AS owner_team, count() AS signals, sum(weight) AS weight,
       uniqExact(customer_id) AS customers
FROM friction_signals FINAL WHERE scenario = {scenario:String}
GROUP BY touchpoint"""
QUARANTINED_SQL = "SELECT count() FROM bad_events FINAL WHERE scenario = {scenario:String}"
# One row per instance id on either side; the join key is the instance id, which derives from the
# customer and the instance's first event, so an instance that was cut differently shows as
# present on one side only.
INSTANCES_SQL = """SELECT
  count() AS instances,
  countIf(b.present AND s.present AND b.status != s.status) AS status_changed,
  countIf(b.present AND s.present AND s.cost > b.cost) AS cost_up,
  countIf(b.present AND s.present AND s.cost < b.cost) AS cost_down,
  countIf(b.present AND NOT s.present) AS only_base,
  countIf(s.present AND NOT b.present) AS only_scenario,
  uniqExactIf(if(b.present, b.customer_id, s.customer_id),
              NOT (b.present AND s.present) OR b.status != s.status OR b.cost != s.cost
              OR b.path != s.path) AS customers_changed,
  uniqExact(if(b.present, b.customer_id, s.customer_id)) AS customers,
  sumIf(s.fitness - b.fitness, b.present AND s.present) AS fitness_gain
FROM (SELECT instance_id, customer_id, status, cost, fitness, path, 1 AS present
      FROM journey_instances FINAL WHERE scenario = {base:String}) AS b
FULL OUTER JOIN (SELECT instance_id, customer_id, status, cost, fitness, path, 1 AS present
      FROM journey_instances FINAL WHERE scenario = {other:String}) AS s
ON b.instance_id = s.instance_id
SETTINGS join_use_nulls = 0"""
TRANSITIONS_SQL = """SELECT b.status, s.status, count()
FROM (SELECT instance_id, status FROM journey_instances FINAL WHERE scenario = {base:String}) AS b
INNER JOIN (SELECT instance_id, status FROM journey_instances FINAL WHERE scenario = {other:String}) AS s
ON b.instance_id = s.instance_id
GROUP BY b.status, s.status"""
COST_DELTAS_SQL = """SELECT toInt64(s.cost) - toInt64(b.cost) AS delta, count()
FROM (SELECT instance_id, cost FROM journey_instances FINAL WHERE scenario = {base:String}) AS b
INNER JOIN (SELECT instance_id, cost FROM journey_instances FINAL WHERE scenario = {other:String}) AS s
ON b.instance_id = s.instance_id
WHERE b.cost != s.cost GROUP BY delta ORDER BY delta"""
# A stable, spread-out sample of changed customers (ordered by a hash, not by id).
SAMPLE_SQL = """SELECT customer_id FROM (
  SELECT if(b.present, b.customer_id, s.customer_id) AS customer_id
  FROM (SELECT instance_id, customer_id, status, cost, path, 1 AS present
        FROM journey_instances FINAL WHERE scenario = {base:String}) AS b
  FULL OUTER JOIN (SELECT instance_id, customer_id, status, cost, path, 1 AS present
        FROM journey_instances FINAL WHERE scenario = {other:String}) AS s
  ON b.instance_id = s.instance_id
  WHERE NOT (b.present AND s.present) OR b.status != s.status OR b.cost != s.cost OR b.path != s.path
  SETTINGS join_use_nulls = 0)
GROUP BY customer_id ORDER BY cityHash64(customer_id), customer_id LIMIT {limit:UInt32}"""
CUSTOMER_SQL = """SELECT i.scenario, i.customer_id, i.instance_id,
       i.journey_id || '@' || toString(i.journey_version), i.status, i.cost, i.fitness, i.path,
       i.started_at, d.kinds
FROM journey_instances AS i FINAL
LEFT JOIN (SELECT scenario, instance_id,
                  groupArray(concat(kind, if(step = '', '', concat(' ', step)))) AS kinds
           FROM (SELECT * FROM deviations FINAL WHERE scenario IN ({base:String}, {other:String})
                 AND customer_id IN {customers:Array(String)} ORDER BY idx)
           GROUP BY scenario, instance_id) AS d
ON i.scenario = d.scenario AND i.instance_id = d.instance_id
WHERE i.scenario IN ({base:String}, {other:String}) AND i.customer_id IN {customers:Array(String)}
ORDER BY i.customer_id, i.started_at, i.instance_id"""


# ---- reading the store ------------------------------------------------------------------------------


def _alerts_sql(store: ClickHouseProjectionStore) -> str | None:
    """How to count a scenario's alerts per touchpoint, if an alerts table is there."""
    if "alerts" not in scenario_tables(store):
        return None
    _, rows = store.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'alerts'"
    )
    columns = {str(row[0]) for row in rows}
    touchpoint = "touchpoint" if "touchpoint" in columns else "''"
    manual = " AND action != 'test'" if "action" in columns else ""  # test alerts are sent by hand
    return f"SELECT {touchpoint}, count() FROM alerts WHERE scenario = {{scenario:String}}{manual} GROUP BY 1"


def read_figures(store: ClickHouseProjectionStore, scenario: str, alerts_sql: str | None) -> ScenarioFigures:
    """Everything compare needs of one scenario."""
    params: dict[str, object] = {"scenario": scenario}
    return ScenarioFigures(
        name=scenario,
        conformance=store.query(CONFORMANCE_SQL, params)[1],
        deviations=store.query(DEVIATIONS_SQL, params)[1],
        friction=store.query(FRICTION_SQL, params)[1],
        alerts=store.query(alerts_sql, params)[1] if alerts_sql else [],
        quarantined=int(store.scalar(QUARANTINED_SQL, params) or 0),
    )


def read_instance_changes(
    store: ClickHouseProjectionStore, base: str, other: str, sample: int = SAMPLE_CUSTOMERS
) -> InstanceChanges:
    """Counts of changed instances and customers, status transitions, cost deltas and a sample."""
    params: dict[str, object] = {"base": base, "other": other}
    _, rows = store.query(INSTANCES_SQL, params)
    (instances, status, up, down, only_base, only_other, changed, customers, gain) = rows[0]
    result = InstanceChanges(
        instances=int(instances),
        customers=int(customers),
        customers_changed=int(changed),
        status_changed=int(status),
        cost_up=int(up),
        cost_down=int(down),
        only_base=int(only_base),
        only_other=int(only_other),
        fitness_gain=float(gain or 0.0),
    )
    _, transitions = store.query(TRANSITIONS_SQL, params)
    result.transitions = {(str(b), str(s)): int(n) for b, s, n in transitions}
    _, deltas = store.query(COST_DELTAS_SQL, params)
    result.cost_deltas = {int(delta): int(n) for delta, n in deltas}
    if changed and sample:
        _, picked = store.query(SAMPLE_SQL, {**params, "limit": sample})
        customers_picked = [str(row[0]) for row in picked]
        _, detail = store.query(CUSTOMER_SQL, {**params, "customers": customers_picked})
        by_customer = {change.customer_id: change for change in customer_changes(detail, base, other)}
        result.sample = [by_customer[c] for c in customers_picked if c in by_customer]
    return result


def read_table_identity(store: ClickHouseProjectionStore, base: str, other: str) -> list[TableIdentity]:
    """Per projection table: rows in one scenario and not in the other (content, not versions)."""
    out = []
    for table in IDENTITY_TABLES:
        columns = ", ".join(name for name in table.column_names if name not in IGNORED_COLUMNS)

        def side(scenario: str, table_name: str = table.name, cols: str = columns) -> str:
            return f"SELECT {cols} FROM {table_name} FINAL WHERE scenario = {{{scenario}:String}}"

        sql = (
            f"SELECT (SELECT count() FROM ({side('base')} EXCEPT ALL {side('other')})),"
            f" (SELECT count() FROM ({side('other')} EXCEPT ALL {side('base')}))"
        )
        _, rows = store.query(sql, {"base": base, "other": other})
        only_base, only_other = int(rows[0][0]), int(rows[0][1])
        differing = _differing_columns(store, table, base, other) if only_base or only_other else ()
        out.append(TableIdentity(table.name, only_base, only_other, differing))
    return out


def _differing_columns(
    store: ClickHouseProjectionStore, table: schema.Table, base: str, other: str
) -> tuple[tuple[str, int], ...]:
    """Per compared column: rows of the base whose value differs from the other scenario's row with the
    same key (or that have no such row), so a reader sees e.g. that only cost and fitness changed."""
    key = [name for name in table.order_by if name not in IGNORED_COLUMNS]
    if "idx" in key:
        # Rows numbered within their instance: one removed deviation renumbers every later one, so
        # per-column counts would mostly count the renumbering.
        return ()
    out = []
    for column in table.column_names:
        if column in IGNORED_COLUMNS or column in key:
            continue
        cols = ", ".join([*key, column])

        def side(scenario: str, cols: str = cols) -> str:
            return f"SELECT {cols} FROM {table.name} FINAL WHERE scenario = {{{scenario}:String}}"

        count = int(
            store.scalar(
                f"SELECT count() FROM ({side('base')} EXCEPT ALL {side('other')})",
                {"base": base, "other": other},
            )
        )
        if count:
            out.append((column, count))
    return tuple(sorted(out, key=lambda item: (-item[1], item[0])))


def compare_scenarios(
    store: ClickHouseProjectionStore, base: str, other: str, sample: int = SAMPLE_CUSTOMERS
) -> Comparison:
    """Compare two stored scenarios; both must exist."""
    check_name(base)
    check_name(other)
    known = {info.name for info in list_scenarios(store)}
    for name in (base, other):
        if name not in known:
            msg = f"there is no scenario named '{name}'; `touchpath scenarios list` shows the ones stored"
            raise ScenarioError(msg)
    alerts_sql = _alerts_sql(store)
    return compare_figures(
        read_figures(store, base, alerts_sql),
        read_figures(store, other, alerts_sql),
        read_instance_changes(store, base, other, sample),
        read_table_identity(store, base, other),
        alerts_table=alerts_sql is not None,
    )


# ---- text ---------------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _signed(value: float, digits: int = 0) -> str:
    return f"{value:+.{digits}f}" if digits else f"{value:+,.0f}"


def _section(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> str:
    return f"\n{title}\n" + render_table(columns, [tuple(row) for row in rows])


def render_text(comparison: Comparison, limit: int = 15) -> str:
    """The comparison as plain-text sections for the terminal."""
    c = comparison
    i = c.instances
    if not c.differences:
        verdict = "no differences (every projection row identical, versions aside)"
    elif i.customers_changed:
        verdict = f"differs: {i.customers_changed:,} of {i.customers:,} customers change"
    else:
        verdict = "differs in rows only: no customer's journey status, cost or path changes (see below)"
    out = [f"compare {c.base} -> {c.other}: {verdict}"]
    conformance = [
        (
            ch.persona,
            ch.journey,
            ",".join(map(str, ch.base.versions)) + " -> " + ",".join(map(str, ch.other.versions)),
            f"{ch.base.instances:,} -> {ch.other.instances:,}",
            f"{_pct(ch.base.rate)} -> {_pct(ch.other.rate)}",
            f"{ch.base.mean_fitness:.3f} -> {ch.other.mean_fitness:.3f}",
        )
        for ch in c.conformance
    ]
    columns = ["persona", "journey", "versions", "instances", "conformant", "mean fitness"]
    out.append(_section("Conformance per persona and journey", columns, conformance))
    moved = [d for d in c.deviations if d.status != "same"]
    rows: list[tuple[Any, ...]]
    if moved:
        rows = [
            (d.persona, d.kind, d.step or "-", d.touchpoint, d.base, d.other, _signed(d.delta), d.status)
            for d in moved[:limit]
        ]
        columns = ["persona", "kind", "step", "touchpoint", "base", "scenario", "delta", "status"]
        out.append(_section(f"Deviations that changed ({len(moved)}, largest first)", columns, rows))
    friction = [f for f in c.friction if f.changed]
    if friction:
        rows = [
            (
                f.touchpoint,
                f.owner_team,
                f"{f.base_signals} -> {f.other_signals}",
                f"{f.base_weight:.1f} -> {f.other_weight:.1f}",
                _signed(f.other_weight - f.base_weight, 1),
            )
            for f in friction[:limit]
        ]
        columns = ["touchpoint", "team", "signals", "weight", "weight delta"]
        out.append(_section("Friction by touchpoint (changed)", columns, rows))
    if c.alerts is None:
        out.append("\nAlerts: this store has no alerts table")
    elif any(a.base or a.other for a in c.alerts):
        rows = [(a.touchpoint, a.base, a.other) for a in c.alerts[:limit]]
        out.append(_section("Alerts that would have fired", ["touchpoint", "base", "scenario"], rows))
    out.append(
        f"\nCustomers: {i.customers_changed:,} of {i.customers:,} change. Instances: {i.status_changed:,} "
        f"change status, cost {i.cost_down:,} down and {i.cost_up:,} up, {i.only_base:,} only in "
        f"{c.base}, {i.only_other:,} only in {c.other}"
    )
    for customer in i.sample[:5]:
        out.append(f"  {customer.customer_id}")
        for label, views in ((c.base, customer.base), (c.other, customer.other)):
            for view in views:
                flagged = f"  [{', '.join(view.deviations)}]" if view.deviations else ""
                out.append(
                    f"    {label:>14}: {view.status:<11} cost {view.cost}  {' > '.join(view.path)}{flagged}"
                )
    differing = [t for t in c.tables if t.only_base or t.only_other]
    if differing:
        counts = ", ".join(f"{t.table} -{t.only_base:,}/+{t.only_other:,}" for t in differing)
        out.append(f"\nRows that differ (ignoring row and journey versions): {counts}")
        for t in differing:
            if t.columns:
                per_column = ", ".join(f"{name} {count:,}" for name, count in t.columns)
                out.append(f"  {t.table}: differing values per column: {per_column}")
    else:
        out.append("\nRows identical in every projection table (ignoring row and journey versions)")
    if c.quarantined != (0, 0):
        out.append(f"Quarantined input: {c.quarantined[0]:,} in {c.base}, {c.quarantined[1]:,} in {c.other}")
    return "\n".join(out)
