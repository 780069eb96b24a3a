"""Erasure (right to be forgotten): remove customers from every table, the data dir and SDK spools."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from events.errors import TouchpathError
from events.spool import LOCK_NAME, SEGMENT_SUFFIX
from projections import schema
from streams.store.clickhouse import ROLLUPS, ClickHouseProjectionStore, StoreError

MUTATION_SETTINGS = {"mutations_sync": 2}  # wait until every replica/part has applied it
PARTS_TIMEOUT_S = 300.0  # how long to wait for ClickHouse to remove the parts a mutation replaced
ERASED = "[erased]"  # what replaces an erased id inside alert evidence and summaries

ERASURE_AUDIT = schema.Table(
    "erasure_audit",
    (
        ("erased_at", "DateTime64(3, 'UTC')"),  # wall clock
        ("id_hash", "String"),  # SHA-256 (hex) of the customer id; the id itself is not kept
        ("removed", "Map(String, UInt64)"),  # table (or spool) -> rows/lines removed
        ("detail", "String"),
    ),
    ("erased_at", "id_hash"),
    versioned=False,
)

# Tables whose rows carry the customer id in a `customer_id` column are found in the catalogue (as
# scenario_tables does), so tables other features add are covered too. Mutations match the id by its
# SHA-256: the mutation text ClickHouse keeps on disk (mutation_N.txt) then holds only hashes.
BY_HASH = "lower(hex(SHA256(customer_id))) IN {hashes:Array(String)}"
ROW_KEY = "lower(hex(sipHash128(scenario, source, toString(position))))"


class ErasureError(TouchpathError):
    """An erasure could not be completed; the message says what is left and what to do."""


def id_hash(customer_id: str) -> str:
    """SHA-256 (hex) of a customer id: what the audit keeps and what mutations match on."""
    return hashlib.sha256(customer_id.encode()).hexdigest()


@dataclass(slots=True)
class ErasureReport:
    """What one erasure removed, per customer hash and table, and what the data dir still holds."""

    removed: dict[str, dict[str, int]] = field(default_factory=dict)  # id hash -> table -> rows
    scrubbed: dict[str, int] = field(default_factory=dict)  # table -> rows rewritten without the ids
    rebuilt: list[str] = field(default_factory=list)  # rollups rebuilt from the base tables
    spool_lines: int = 0
    spool_files: int = 0
    kafka_tombstones: list[tuple[int, int]] | None = None  # (partition, offset); None: not asked
    remaining_files: list[str] = field(default_factory=list)  # files under the data dir with an id's bytes
    remaining_rows: dict[str, int] = field(default_factory=dict)  # table -> rows still mentioning an id
    checked_dir: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class _Job:
    """One erasure in progress: the ids, their bytes and hashes, and what was done so far."""

    store: ClickHouseProjectionStore
    ids: list[str]  # sorted
    hashes: list[str]  # id_hash of each id, same order
    events: set[str]  # the customers' event ids
    report: ErasureReport
    touched: set[str] = field(default_factory=set)

    @property
    def needles(self) -> list[bytes]:
        """The ids as bytes, as they appear in stored text."""
        return [customer.encode() for customer in self.ids]


def customer_tables(store: ClickHouseProjectionStore) -> list[str]:
    """Every stored MergeTree table with a customer_id column."""
    _, rows = store.query(
        """SELECT c.table FROM system.columns AS c
INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
WHERE c.database = currentDatabase() AND c.name = 'customer_id' AND t.engine LIKE '%MergeTree'
ORDER BY c.table"""
    )
    return [str(row[0]) for row in rows]


def _tables(store: ClickHouseProjectionStore) -> set[str]:
    _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    return {str(row[0]) for row in rows}


def _command(store: ClickHouseProjectionStore, sql: str, parameters: dict[str, object] | None = None) -> None:
    try:
        store.client.command(sql, parameters=parameters or {}, settings=MUTATION_SETTINGS)
    except Exception as error:
        first_line = sql.splitlines()[0]
        msg = f"erasure step failed ({first_line} ...): {error}; run the same erase again to finish it"
        raise ErasureError(msg) from error


def _scrub_text(text: str, ids: Sequence[str], events: set[str]) -> str:
    if text in events:
        return ERASED
    for customer in ids:
        text = text.replace(customer, ERASED)
    return text


def _scrub(value: Any, ids: Sequence[str], events: set[str]) -> Any:
    """The JSON value with every erased id (and the erased customers' event ids) replaced."""
    if isinstance(value, str):
        return _scrub_text(value, ids, events)
    if isinstance(value, list):
        return [_scrub(item, ids, events) for item in value]
    if isinstance(value, dict):
        return {_scrub_text(key, ids, events): _scrub(item, ids, events) for key, item in value.items()}
    return value


def _bad_event_matches(row: Sequence[Any], ids: set[str], needles: Sequence[bytes]) -> bool:
    """Whether a quarantined line belongs to (or mentions) an erased customer."""
    _, source, _, field_name, detail, raw = row
    raw_bytes = raw.encode() if isinstance(raw, str) else bytes(raw)
    try:
        parsed = orjson.loads(raw_bytes)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("customer_id") in ids:
        return True
    # Unparseable or other lines: any mention of an id's bytes counts (an erasure errs on removing).
    texts = (raw_bytes, str(source).encode(), str(field_name or "").encode(), str(detail).encode())
    return any(needle in text for needle in needles for text in texts)


def erase_customers(
    store: ClickHouseProjectionStore,
    customer_ids: Sequence[str],
    *,
    spool_dirs: Sequence[Path] = (),
    data_dir: Path | None = None,
    kafka: tuple[str, str] | None = None,
    parts_timeout_s: float = PARTS_TIMEOUT_S,
) -> ErasureReport:
    """Remove the customers from every table, rebuild the rollups, purge the spools, wait until
    ClickHouse has removed the replaced parts from disk, record an audit row per customer and (with
    data_dir, embedded) check that no file under it still holds an id's bytes. kafka = (bootstrap,
    app id): also tombstone the customers' keys in the worker's journey-state changelog."""
    started = time.monotonic()
    ids = sorted({customer for customer in customer_ids if customer})
    if not ids:
        msg = "no customer id given: pass --customer ID (one or more)"
        raise ErasureError(msg)
    hashes = [id_hash(customer) for customer in ids]
    needles = [customer.encode() for customer in ids]
    report = ErasureReport(removed={digest: {} for digest in hashes})
    for statement in _audit_ddl(store):
        store.client.command(statement)
    present = _tables(store)
    touched: set[str] = set()

    # The customers' event ids: alert evidence names them next to the customer ids.
    events: set[str] = set()
    if "touchpoint_events" in present:
        _, rows = store.query(
            f"SELECT DISTINCT event_id FROM touchpoint_events WHERE {BY_HASH}", {"hashes": hashes}
        )
        events = {str(row[0]) for row in rows}

    for table in customer_tables(store):
        _, counts = store.query(
            f"SELECT lower(hex(SHA256(customer_id))) AS h, count() FROM {table} WHERE {BY_HASH} GROUP BY h",
            {"hashes": hashes},
        )
        if not counts:
            continue
        for digest, count in counts:
            report.removed[str(digest)][table] = int(count)
        _command(store, f"ALTER TABLE {table} DELETE WHERE {BY_HASH}", {"hashes": hashes})
        touched.add(table)

    job = _Job(store, ids, hashes, events, report, touched)
    if "bad_events" in present:
        _erase_bad_events(job)
    if "alerts" in present:
        _scrub_alerts(job)
    if "alert_state" in present:
        _scrub_alert_state(job)
    report.rebuilt = _rebuild_rollups(store, present, touched)
    for directory in spool_dirs:
        lines, files = purge_spool(directory, set(ids), needles)
        report.spool_lines += lines
        report.spool_files += files
    if kafka is not None:
        report.kafka_tombstones = tombstone_states(kafka[0], kafka[1], ids)
    if store.cluster is None:
        _drop_replaced_parts(store, sorted(touched), parts_timeout_s)
    _audit(store, hashes, report)
    if data_dir is not None:
        report.remaining_rows = rows_mentioning(store, ids)
        report.checked_dir = str(data_dir)
        report.remaining_files = files_containing(data_dir, needles)
    report.seconds = time.monotonic() - started
    return report


def _audit_ddl(store: ClickHouseProjectionStore) -> list[str]:
    columns = ",\n  ".join(f"`{name}` {kind}" for name, kind in ERASURE_AUDIT.columns)
    order = ", ".join(ERASURE_AUDIT.order_by)
    if store.cluster is None:
        return [
            f"CREATE TABLE IF NOT EXISTS {ERASURE_AUDIT.name} (\n  {columns}\n) "
            f"ENGINE = MergeTree ORDER BY ({order})"
        ]
    cluster, name = store.cluster, ERASURE_AUDIT.name
    path = f"'/clickhouse/tables/{{shard}}/{{database}}/{ERASURE_AUDIT.name}', '{{replica}}'"
    return [
        f"CREATE TABLE IF NOT EXISTS {ERASURE_AUDIT.name}_local ON CLUSTER {cluster} (\n  {columns}\n)\n"
        f"ENGINE = ReplicatedMergeTree({path}) ORDER BY ({order})",
        f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {name}_local\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {name}_local, rand())",
    ]


def _erase_bad_events(job: _Job) -> None:
    # Quarantined lines have no customer column (they may not even parse): they are read here and
    # matched in Python, then deleted by a hash of their key (the key can hold an id: replays
    # quarantine under source 'touchpoint_events/<customer>').
    _, rows = job.store.query(
        f"SELECT scenario, source, position, field, detail, raw, {ROW_KEY} FROM bad_events"
    )
    keys = sorted({str(row[6]) for row in rows if _bad_event_matches(row[:6], set(job.ids), job.needles)})
    if not keys:
        return
    for digest, count in _bad_lines_per_customer(rows, job.ids, job.hashes).items():
        job.report.removed[digest]["bad_events"] = count
    _command(
        job.store, f"ALTER TABLE bad_events DELETE WHERE {ROW_KEY} IN {{keys:Array(String)}}", {"keys": keys}
    )
    job.touched.add("bad_events")


def _bad_lines_per_customer(
    rows: Iterable[Sequence[Any]], ids: Sequence[str], hashes: Sequence[str]
) -> dict[str, int]:
    """Quarantined lines per erased customer (a line mentioning several counts for each)."""
    out: dict[str, int] = {}
    for row in rows:
        for customer, digest in zip(ids, hashes, strict=True):
            if _bad_event_matches(row[:6], {customer}, [customer.encode()]):
                out[digest] = out.get(digest, 0) + 1
    return out


def _scrub_alerts(job: _Job) -> None:
    # An alert stays (it is about a touchpoint), but its examples lose the erased customers and
    # their events, and its summary names them no more.
    store, ids, needles, events = job.store, job.ids, job.needles, job.events
    _, rows = store.query(
        "SELECT scenario, alert_id, example_customer_ids, example_event_ids, summary FROM alerts"
    )
    erased = set(ids)
    done = set()
    for scenario, alert_id, customers, event_ids, summary in rows:
        text = orjson.dumps([customers, event_ids, summary])
        if not any(needle in text for needle in needles) and not (events & set(event_ids)):
            continue
        if (scenario, alert_id) in done:
            continue
        done.add((scenario, alert_id))
        _command(
            store,
            "ALTER TABLE alerts UPDATE example_customer_ids = {customers:Array(String)}, "
            "example_event_ids = {events:Array(String)}, summary = {summary:String} "
            "WHERE scenario = {scenario:String} AND alert_id = {alert:String}",
            {
                "customers": [c for c in customers if c not in erased],
                "events": [e for e in event_ids if e not in events],
                "summary": _scrub_text(str(summary), ids, set()),
                "scenario": scenario,
                "alert": alert_id,
            },
        )
    if done:
        job.report.scrubbed["alerts"] = len(done)
        job.touched.add("alerts")


def _scrub_alert_state(job: _Job) -> None:
    # The detector's state keeps example customers and event ids of open incidents: they are
    # replaced by a placeholder, so its counts (distinct customers) stay as they were.
    store, ids, needles, events = job.store, job.ids, job.needles, job.events
    _, rows = store.query("SELECT scenario, touchpoint, version, state, cityHash64(state) FROM alert_state")
    scrubbed = 0
    for scenario, touchpoint, version, state, digest in rows:
        raw = state.encode() if isinstance(state, str) else bytes(state)
        if not any(needle in raw for needle in needles) and not any(e.encode() in raw for e in events):
            continue
        cleaned = orjson.dumps(_scrub(orjson.loads(raw), ids, events)).decode()
        _command(
            store,
            "ALTER TABLE alert_state UPDATE state = {state:String} WHERE scenario = {scenario:String} "
            "AND touchpoint = {touchpoint:String} AND version = {version:UInt64} "
            "AND cityHash64(state) = {digest:UInt64}",
            {"state": cleaned, "scenario": scenario, "touchpoint": touchpoint, "version": version,
             "digest": digest},
        )  # fmt: skip
        scrubbed += 1
    if scrubbed:
        job.report.scrubbed["alert_state"] = scrubbed
        job.touched.add("alert_state")


MV_PATTERN = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\s+TO (\w+) AS\n(.*)", re.DOTALL)


def _rebuild_rollups(store: ClickHouseProjectionStore, present: set[str], touched: set[str]) -> list[str]:
    """Rebuild each rollup whose source lost rows: its aggregate states held hashes of the erased ids
    and their counts. Rebuilt from the rows now stored (the materialized view saw every version as it
    was inserted; a rebuild sees the versions not yet merged away)."""
    rebuilt = []
    for ddl in ROLLUPS:
        match = MV_PATTERN.match(ddl)
        if match is None:
            continue
        _, target, select = match.groups()
        source = re.search(r"\bFROM (\w+)", select)
        if target not in present or source is None or source.group(1) not in touched:
            continue
        _command(store, f"TRUNCATE TABLE {target}")
        _command(store, f"INSERT INTO {target}\n{select}")
        touched.add(target)
        rebuilt.append(target)
    return rebuilt


def _drop_replaced_parts(store: ClickHouseProjectionStore, tables: list[str], timeout_s: float) -> None:
    """Wait until the parts the mutations replaced are gone from disk.

    ClickHouse keeps a replaced (inactive) part for `old_parts_lifetime` (8 min by default) before a
    background cleanup deletes its directory, and those parts still hold the erased rows. The tables'
    lifetime is set to 0 for the wait and reset afterwards; the cleanup runs every ~30 s.
    """
    if not tables:
        return
    for table in tables:
        _command(store, f"ALTER TABLE {table} MODIFY SETTING old_parts_lifetime = 0")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            _, rows = store.query(
                "SELECT table, count() FROM system.parts WHERE database = currentDatabase() "
                "AND table IN {tables:Array(String)} AND NOT active GROUP BY table",
                {"tables": tables},
            )
            if not rows:
                return
            if time.monotonic() > deadline:
                left = ", ".join(f"{table} ({count})" for table, count in rows)
                msg = (
                    f"old parts still on disk after {timeout_s:.0f}s: {left}; ClickHouse deletes them in "
                    "the background — run the same erase again later to check"
                )
                raise ErasureError(msg)
            time.sleep(1.0)
    finally:
        for table in tables:
            with contextlib.suppress(ErasureError):
                _command(store, f"ALTER TABLE {table} RESET SETTING old_parts_lifetime")


def _audit(store: ClickHouseProjectionStore, hashes: Sequence[str], report: ErasureReport) -> None:
    now = datetime.now(UTC)
    detail = {
        "scrubbed": report.scrubbed,
        "rollups_rebuilt": report.rebuilt,
        "spool_lines": report.spool_lines,
        "kafka_state_tombstones": None if report.kafka_tombstones is None else len(report.kafka_tombstones),
    }
    rows = [
        (
            now,
            digest,
            {**report.removed[digest], "spool_lines": report.spool_lines},
            orjson.dumps(detail).decode(),
        )
        for digest in hashes
    ]
    try:
        store.insert_rows(ERASURE_AUDIT, rows)
    except StoreError as error:
        msg = f"the customers were erased but the audit row could not be written: {error}"
        raise ErasureError(msg) from error


def rows_mentioning(store: ClickHouseProjectionStore, ids: Sequence[str]) -> dict[str, int]:
    """Rows of any table (every column as text) that still contain an id, per table.

    The complement of the byte check: stored parts are compressed, so an id's bytes need not appear
    literally in a file; once no replaced part is left, every stored row is read here. Aggregate
    states (rollups) are skipped: uniqExact keeps 128-bit hashes, not the ids. Only for the embedded
    store: a server would log the ids of this query in its query_log.
    """
    _, rows = store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree' "
        "AND engine NOT LIKE '%AggregatingMergeTree' ORDER BY name"
    )
    found = {}
    for (table,) in rows:
        count = store.scalar(
            f"SELECT count() FROM {table} WHERE multiSearchAny(toString(tuple(*)), {{ids:Array(String)}})",
            {"ids": list(ids)},
        )
        if count:
            found[str(table)] = int(count)
    return found


def purge_spool(directory: Path, ids: set[str], needles: Sequence[bytes]) -> tuple[int, int]:
    """Remove the customers' events from an SDK spool directory (its owner must be stopped); returns
    (lines removed, segment files rewritten). A segment is rewritten to a temporary file, fsynced and
    renamed over the old one."""
    if not directory.is_dir():
        msg = f"spool directory {directory} does not exist"
        raise ErasureError(msg)
    lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            msg = f"spool directory {directory} is in use by a running client; stop it and erase again"
            raise ErasureError(msg) from error
        removed = rewritten = 0
        for path in sorted(directory.glob(f"*{SEGMENT_SUFFIX}")):
            data = path.read_bytes()
            lines = data.split(b"\n")
            kept = [line for line in lines if not _spooled_event_matches(line, ids, needles)]
            if len(kept) == len(lines):
                continue
            removed += len(lines) - len(kept)
            temporary = path.with_suffix(".erasing")
            with temporary.open("wb") as handle:
                handle.write(b"\n".join(kept))
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(path)
            rewritten += 1
        if rewritten:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return removed, rewritten
    finally:
        os.close(lock_fd)


def _spooled_event_matches(line: bytes, ids: set[str], needles: Sequence[bytes]) -> bool:
    if not line:
        return False
    with contextlib.suppress(orjson.JSONDecodeError):
        event = orjson.loads(line)
        if isinstance(event, dict) and event.get("customer_id") in ids:
            return True
    return any(needle in line for needle in needles)


def files_containing(directory: Path, needles: Sequence[bytes], chunk: int = 1 << 20) -> list[str]:
    """Files under directory whose bytes contain any needle (read in overlapping chunks)."""
    longest = max((len(needle) for needle in needles), default=0)
    if not longest:
        return []
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with contextlib.suppress(OSError), path.open("rb") as handle:
            tail = b""
            while block := handle.read(chunk):
                window = tail + block
                if any(needle in window for needle in needles):
                    found.append(str(path))
                    break
                tail = window[-(longest - 1) :] if longest > 1 else b""
    return found


def state_changelog(app_id: str) -> str:
    """The worker's journey-state changelog topic (Faust names it <app id>-<table>-changelog)."""
    return f"{app_id}-journey-state-changelog"


def tombstone_states(bootstrap: str, app_id: str, customer_ids: Sequence[str]) -> list[tuple[int, int]]:
    """Write a tombstone (null value) for each customer's key to the worker's journey-state changelog;
    returns (partition, offset) of each. The topic is compacted: compaction then drops the customer's
    earlier state records, and a worker recovering the table deletes the key. Stop the workers first
    (a running worker keeps the state in memory). Nothing is written when the topic does not exist."""
    from kafka import KafkaProducer  # noqa: PLC0415 -- only erasures with --kafka need it
    from kafka.admin import KafkaAdminClient  # noqa: PLC0415

    topic = state_changelog(app_id)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="touchpath-erase")
        try:
            exists = topic in admin.list_topics()
        finally:
            admin.close()
        if not exists:
            return []  # (asking the producer would wait a minute for metadata of a missing topic)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="touchpath-erase")
    except Exception as error:
        msg = f"cannot reach Kafka at {bootstrap} to tombstone journey states: {error}"
        raise ErasureError(msg) from error
    try:
        # Keys are the raw customer id bytes and the default (murmur2) partitioner places them where
        # the worker's changelog records for that customer are.
        futures = [producer.send(topic, key=customer.encode(), value=None) for customer in customer_ids]
        producer.flush(timeout=30)
        placed = []
        for future in futures:
            metadata = future.get(timeout=30)
            placed.append((int(metadata.partition), int(metadata.offset)))
        return placed
    except Exception as error:
        msg = f"tombstoning journey states in {topic} failed: {error}; run the erase again with --kafka"
        raise ErasureError(msg) from error
    finally:
        producer.close(timeout=5)
