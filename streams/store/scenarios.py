"""Scenarios in the store: names, their run records, listing them and deleting one everywhere."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.errors import TouchpathError
from projections import schema
from streams.store.clickhouse import ClickHouseProjectionStore, table_ddl

LIVE = "live"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Mutations must be finished when the call returns, or a replay could write into rows being deleted.
MUTATION_SETTINGS = {"mutations_sync": 2}

SCENARIO_RUNS = schema.Table(
    "scenario_runs",
    (
        ("scenario", "LowCardinality(String)"),
        ("replayed_at", schema.TS),
        ("source", "String"),
        ("journeys_file", "String"),
        ("journeys", "Array(String)"),
        ("window_from", f"Nullable({schema.TS})"),
        ("window_to", f"Nullable({schema.TS})"),
        ("events", "UInt64"),
        ("quarantined", "UInt64"),
        ("seconds", "Float64"),
        ("definitions", "String"),  # the journey file as JSON, registry inlined: compare rebuilds the model
        ("complete", "UInt8"),  # 0 from the start of a replay until it finished writing
    ),
    ("scenario",),
    versioned=False,
)


def write_settings(label: str) -> dict[str, object]:
    """Settings for one insert of scenario rows: synchronous, with a token no other insert has.

    A re-run scenario repeats its earlier blocks byte for byte, and block deduplication
    (non_replicated_deduplication_window) silently drops them even after the old rows were deleted;
    chDB does not honour insert_deduplicate = 0 here, a fresh deduplication token it does.
    """
    return {"async_insert": 0, "insert_deduplication_token": f"{label}:{uuid.uuid4().hex}"}


class ScenarioError(TouchpathError):
    """A scenario name is invalid, protected or unknown."""


def check_name(name: str) -> str:
    """The name if it is a valid scenario name, else a ScenarioError saying what a name looks like."""
    if not NAME_PATTERN.match(name):
        msg = (
            f"'{name}' is not a valid scenario name: use 1-63 characters, lower-case letters, digits, "
            "'_' or '-', starting with a letter (e.g. checkout-v2)"
        )
        raise ScenarioError(msg)
    return name


def check_writable(name: str) -> str:
    """The name if a replay may write (and delete) it: valid and not `live`."""
    check_name(name)
    if name == LIVE:
        msg = (
            "the live scenario holds the production projections and is never replaced or dropped; "
            "give the replay another name, e.g. --scenario redesign-1"
        )
        raise ScenarioError(msg)
    return name


def ensure_run_table(store: ClickHouseProjectionStore) -> None:
    """Create the scenario_runs table if missing."""
    for statement in table_ddl(SCENARIO_RUNS, store.cluster):
        store.command(statement)


def scenario_tables(store: ClickHouseProjectionStore) -> list[str]:
    """Every stored table with a scenario column (projections, rollups, alerts, run records).

    Found in the catalogue rather than listed, so tables other features add are cleared too.
    Views and Distributed tables hold no rows of their own and are left out.
    """
    _, rows = store.query(
        """SELECT c.table FROM system.columns AS c
INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
WHERE c.database = currentDatabase() AND c.name = 'scenario' AND t.engine LIKE '%MergeTree'
ORDER BY c.table"""
    )
    return [str(row[0]) for row in rows]


def clear_scenario(store: ClickHouseProjectionStore, name: str, *, wait: bool = True) -> list[str]:
    """Delete every row of a scenario in every table; returns the tables that had rows. Never `live`.

    The deletes run as one mutation per table, side by side. With wait=False they finish in the
    background: a mutation only touches parts that existed when it was made, so rows inserted
    meanwhile survive it — call wait_for_mutations before reading the scenario.
    """
    check_writable(name)
    cleared = []
    on_cluster = f" ON CLUSTER {store.cluster}" if store.cluster else ""
    # Across a cluster, wait on each statement; locally, wait once for all of them.
    settings = MUTATION_SETTINGS if store.cluster else {"mutations_sync": 0}
    for table in scenario_tables(store):
        # A mutation rewrites parts even when nothing matches: only run it where rows exist.
        if store.scalar(f"SELECT count() FROM {table} WHERE scenario = {{s:String}}", {"s": name}):
            store.command(
                f"ALTER TABLE {table}{on_cluster} DELETE WHERE scenario = {{s:String}}", {"s": name}, settings
            )
            cleared.append(table)
    if wait:
        wait_for_mutations(store, cleared)
    return cleared


def wait_for_mutations(store: ClickHouseProjectionStore, tables: list[str], timeout_s: float = 600.0) -> None:
    """Block until no mutation on these tables is pending; a failed one raises with its reason."""
    if not tables or store.cluster:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        _, rows = store.query(
            "SELECT table, latest_fail_reason FROM system.mutations WHERE database = currentDatabase() "
            "AND table IN {tables:Array(String)} AND NOT is_done",
            {"tables": tables},
        )
        if not rows:
            return
        failed = [f"{table}: {reason}" for table, reason in rows if reason]
        if failed:
            msg = f"deleting old scenario rows failed ({'; '.join(failed)}); see system.mutations"
            raise ScenarioError(msg)
        if time.monotonic() > deadline:
            pending = ", ".join(sorted({str(row[0]) for row in rows}))
            msg = f"deleting old scenario rows did not finish within {timeout_s:.0f}s on {pending}"
            raise ScenarioError(msg)
        time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    """One scenario as `scenarios list` shows it."""

    name: str
    events: int
    customers: int
    instances: int
    conformant_pct: float | None
    journeys: tuple[str, ...]
    source: str  # how it was made: 'replay from clickhouse ...' or 'touchpath run'
    replayed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "scenario": self.name,
            "events": self.events,
            "customers": self.customers,
            "instances": self.instances,
            "conformant_pct": self.conformant_pct,
            "journeys": list(self.journeys),
            "source": self.source,
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """How a replayed scenario was made."""

    scenario: str
    replayed_at: datetime
    source: str
    journeys_file: str
    journeys: tuple[str, ...]
    window_from: datetime | None
    window_to: datetime | None
    events: int
    quarantined: int
    seconds: float
    definitions: str
    complete: bool = True

    def row(self) -> tuple[object, ...]:
        """The scenario_runs row."""
        return (
            self.scenario, self.replayed_at, self.source, self.journeys_file, list(self.journeys),
            self.window_from, self.window_to, self.events, self.quarantined, self.seconds, self.definitions,
            int(self.complete),
        )  # fmt: skip

    def describe(self) -> str:
        """'replay from clickhouse (2026-01-01 00:00 .. end) of redesign.yaml'."""
        start = f"{self.window_from:%Y-%m-%d %H:%M}" if self.window_from else "start"
        end = f"{self.window_to:%Y-%m-%d %H:%M}" if self.window_to else "end"
        unfinished = "" if self.complete else "INCOMPLETE (interrupted; replay it again) "
        return f"{unfinished}replay from {self.source} ({start} .. {end}) of {self.journeys_file}"


def record_run(store: ClickHouseProjectionStore, record: RunRecord) -> None:
    """Write (replace) a scenario's run record."""
    ensure_run_table(store)
    token = write_settings(f"run-record:{record.scenario}")["insert_deduplication_token"]
    store.insert_rows(SCENARIO_RUNS, [record.row()], token=str(token))


def run_record(store: ClickHouseProjectionStore, name: str) -> RunRecord | None:
    """The latest run record of a scenario, if it was replayed."""
    ensure_run_table(store)
    _, rows = store.query(
        f"SELECT {', '.join(SCENARIO_RUNS.column_names)} FROM {SCENARIO_RUNS.name} "
        "WHERE scenario = {s:String} ORDER BY replayed_at DESC LIMIT 1",
        {"s": name},
    )
    if not rows:
        return None
    values = list(rows[0])
    values[4] = tuple(values[4])
    values[-1] = bool(values[-1])
    return RunRecord(*values)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


LIST_SQL = """SELECT scenario, count() AS instances, uniqExact(customer_id) AS customers,
       round(100 * countIf(cost = 0) / count(), 1) AS conformant_pct,
       arraySort(groupUniqArray(journey_id || '@' || toString(journey_version))) AS journeys
FROM journey_instances FINAL GROUP BY scenario"""


def list_scenarios(store: ClickHouseProjectionStore) -> list[ScenarioInfo]:
    """Every scenario with rows in any table: live first, then by name."""
    ensure_run_table(store)
    names: set[str] = set()
    for table in scenario_tables(store):
        _, rows = store.query(f"SELECT DISTINCT scenario FROM {table}")
        names |= {str(row[0]) for row in rows}
    _, event_rows = store.query("SELECT scenario, count() FROM touchpoint_events FINAL GROUP BY scenario")
    events = {str(row[0]): int(row[1]) for row in event_rows}
    _, instance_rows = store.query(LIST_SQL)
    instances = {str(row[0]): row for row in instance_rows}
    out = []
    for name in sorted(names, key=lambda n: (n != LIVE, n)):
        record = run_record(store, name)
        _, count, customers, conformant, journeys = instances.get(name, (name, 0, 0, None, []))
        source = record.describe() if record else ("production" if name == LIVE else "touchpath run")
        out.append(
            ScenarioInfo(
                name=name,
                events=events.get(name, 0),
                customers=int(customers),
                instances=int(count),
                conformant_pct=float(conformant) if conformant is not None else None,
                journeys=tuple(journeys),
                source=source,
                replayed_at=_utc(record.replayed_at) if record else None,
            )
        )
    return out


def drop_scenario(store: ClickHouseProjectionStore, name: str) -> list[str]:
    """Delete a scenario everywhere; refuses `live` and names that have no rows."""
    check_writable(name)
    known = {info.name for info in list_scenarios(store)}
    if name not in known:
        msg = f"there is no scenario named '{name}'; `touchpath scenarios list` shows the ones stored"
        raise ScenarioError(msg)
    return clear_scenario(store, name)
