"""ClickHouseProjectionStore: the projection tables in chDB (embedded) or a ClickHouse server."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import clickhouse_connect
import structlog
from clickhouse_connect.driver import options as ch_options

from events.errors import TouchpathError
from projections import schema
from projections.views import VIEWS
from streams.store.protocol import write_batch
from streams.store.sqlguard import GuardedSQL, SqlLimits

if TYPE_CHECKING:  # the engine (and numpy) load only where rows are built, not for a query
    import pyarrow as pa

    from projections.engine import RowBatch
    from streams.store.columns import ColumnBatch

log = structlog.get_logger("touchpath.store")

# Inserts must be durable when the call returns (servers default to async inserts now).
INSERT_SETTINGS = {"async_insert": 0}
WRITE_PATTERN = re.compile(
    r"^\s*(insert|create|drop|alter|truncate|rename|delete|update|optimize|system|grant|revoke|"
    r"attach|detach|kill|set|use|exchange|undrop|move)\b",
    re.IGNORECASE,
)


class StoreError(TouchpathError):
    """A ClickHouse operation failed; the message names the table or query."""


def table_ddl(table: schema.Table, cluster: str | None = None) -> list[str]:
    """CREATE statements for one table: plain single-node, or Replicated local + Distributed."""
    columns = ",\n  ".join(f"`{name}` {kind}" for name, kind in table.columns)
    version_args = "version, is_deleted" if table.versioned else ""
    partition = f"\nPARTITION BY {table.partition_by}" if table.partition_by else ""
    order = ", ".join(table.order_by)
    settings = "\nSETTINGS non_replicated_deduplication_window = 1000" if cluster is None else ""
    if cluster is None:
        engine = f"ReplacingMergeTree({version_args})"
        return [
            f"CREATE TABLE IF NOT EXISTS {table.name} (\n  {columns}\n)\nENGINE = {engine}"
            f"{partition}\nORDER BY ({order}){settings}"
        ]
    path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table.name}', '{{replica}}'"
    engine = f"ReplicatedReplacingMergeTree({path}{', ' + version_args if version_args else ''})"
    shard_key = "cityHash64(customer_id)" if "customer_id" in table.column_names else "rand()"
    return [
        f"CREATE TABLE IF NOT EXISTS {table.name}_local ON CLUSTER {cluster} (\n  {columns}\n)\n"
        f"ENGINE = {engine}{partition}\nORDER BY ({order})",
        f"CREATE TABLE IF NOT EXISTS {table.name} ON CLUSTER {cluster} AS {table.name}_local\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {table.name}_local, {shard_key})",
    ]


ROLLUPS = [
    """CREATE TABLE IF NOT EXISTS friction_per_touchpoint_minute (
  scenario LowCardinality(String),
  touchpoint LowCardinality(String),
  owner_team LowCardinality(String),
  kind LowCardinality(String),
  minute DateTime('UTC'),
  signals AggregateFunction(uniqExact, String),
  customers AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree ORDER BY (scenario, touchpoint, kind, owner_team, minute)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS friction_per_touchpoint_minute_mv
TO friction_per_touchpoint_minute AS
SELECT scenario, touchpoint, owner_team, kind,
       toDateTime(toStartOfMinute(occurred_at), 'UTC') AS minute,
       uniqExactState(signal_id) AS signals, uniqExactState(customer_id) AS customers
FROM friction_signals WHERE is_deleted = 0
GROUP BY scenario, touchpoint, owner_team, kind, minute""",
    """CREATE TABLE IF NOT EXISTS conformance_per_persona_day (
  scenario LowCardinality(String),
  persona LowCardinality(String),
  journey_id LowCardinality(String),
  journey_version UInt32,
  day Date,
  instances AggregateFunction(uniqExact, String),
  conformant AggregateFunction(uniqExact, String),
  completed AggregateFunction(uniqExact, String),
  abandoned AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree ORDER BY (scenario, persona, journey_id, journey_version, day)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS conformance_per_persona_day_mv
TO conformance_per_persona_day AS
SELECT scenario, persona, journey_id, journey_version, toDate(started_at) AS day,
       uniqExactState(instance_id) AS instances,
       uniqExactIfState(instance_id, cost = 0) AS conformant,
       uniqExactIfState(instance_id, status = 'completed') AS completed,
       uniqExactIfState(instance_id, status = 'abandoned') AS abandoned
FROM journey_instances WHERE is_deleted = 0 AND ended_at IS NOT NULL
GROUP BY scenario, persona, journey_id, journey_version, day""",
]


class ClickHouseProjectionStore:
    """Writes projection rows idempotently and answers analysts' queries.

    Embedded (chDB, one process per data dir) or a server over HTTP; same client API, same schema.
    """

    def __init__(
        self,
        client: Any,
        cluster: str | None = None,
        description: str = "",
        connect: Callable[[dict[str, object]], Any] | None = None,
    ) -> None:
        _skip_pandas_probe()
        self.client = client
        self.cluster = cluster
        self.description = description
        # Opens another client on the same store with the given session settings (for analysts).
        self.connect = connect

    @classmethod
    def embedded(cls, data_dir: Path) -> ClickHouseProjectionStore:
        """Open (creating if needed) the chDB data dir; only one process may hold it."""
        private_dir(data_dir)
        try:
            client = clickhouse_connect.get_client(interface="chdb", path=str(data_dir / "chdb"))
        except Exception as error:
            msg = (
                f"cannot open the embedded ClickHouse data dir {data_dir}: {error}. "
                "Only one process may use a data dir at a time; stop the other one or pass "
                "another --data-dir."
            )
            raise StoreError(msg) from error

        def connect(settings: dict[str, object]) -> Any:
            return clickhouse_connect.get_client(
                interface="chdb", path=str(data_dir / "chdb"), settings=settings
            )

        return cls(client, description=f"chDB at {data_dir}", connect=connect)

    @classmethod
    def server(cls, url: str, cluster: str | None = None) -> ClickHouseProjectionStore:
        """Connect to a ClickHouse server, e.g. http://user:password@host:8123/database."""
        try:
            client = clickhouse_connect.get_client(dsn=url)
        except Exception as error:
            msg = f"cannot connect to ClickHouse at {_redact(url)}: {error}"
            raise StoreError(msg) from error

        def connect(settings: dict[str, object]) -> Any:
            # A read-only user (deploy/clickhouse/analyst.sql) gets readonly and the limits from its
            # profile, which no client may change: connect as it is. Any other user gets them here.
            plain = clickhouse_connect.get_client(dsn=url)
            if int(plain.query("SELECT getSetting('readonly')").result_rows[0][0]) > 0:
                return plain
            plain.close()
            return clickhouse_connect.get_client(dsn=url, settings=settings)

        return cls(client, cluster, description=f"ClickHouse at {_redact(url)}", connect=connect)

    def create_schema(self) -> None:
        """Create every table and rollup if missing, and (re)define the analyst views (safe to run on
        every start)."""
        statements = [ddl for table in schema.TABLES for ddl in table_ddl(table, self.cluster)]
        if self.cluster is None:
            statements += ROLLUPS
        _, current = self.query(
            "SELECT name, comment FROM system.tables WHERE database = currentDatabase() AND engine = 'View'"
        )
        defined = {str(name): str(comment) for name, comment in current}
        statements += [view.ddl(self.cluster) for view in VIEWS if defined.get(view.name) != view.comment]
        for statement in statements:
            self.client.command(statement)

    def write(self, batch: RowBatch | ColumnBatch) -> int:
        """Insert a batch, table by table, column-oriented (Arrow rows as one Arrow stream per
        table); returns rows written."""
        return write_batch(batch, self.insert_rows, self.insert_arrow)

    def insert_arrow(self, table: schema.Table, data: pa.Table, token: str | None = None) -> None:
        """Insert an Arrow table of one table's rows (ClickHouse parses it: no Python work per row);
        the tokens work as insert_rows's."""
        from streams.store.arrow_rows import ipc_stream  # noqa: PLC0415 -- pyarrow loads where rows are built

        settings: dict[str, object] = dict(INSERT_SETTINGS)
        settings["insert_deduplication_token"] = token if token is not None else uuid.uuid4().hex
        self.insert_arrow_stream(table, ipc_stream(data), data.num_rows, settings)

    def insert_rows(
        self, table: schema.Table, rows: Sequence[tuple[object, ...]], token: str | None = None
    ) -> None:
        """Insert rows of one table; a dedup token makes a retried insert a no-op.

        Without a token the insert gets a unique one: the tables keep a deduplication window (for
        the streaming sink's retries), and ClickHouse would otherwise silently drop a block that
        equals an earlier one - e.g. a scenario re-run after it was dropped. Re-runs are made
        idempotent by ReplacingMergeTree versions instead.
        """
        settings: dict[str, object] = dict(INSERT_SETTINGS)
        settings["insert_deduplication_token"] = token if token is not None else uuid.uuid4().hex
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            self.client.insert(
                table.name,
                columns,
                column_names=list(table.column_names),
                column_oriented=True,
                settings=settings,
            )
        except Exception as error:
            msg = f"insert of {len(rows)} rows into {table.name} failed: {error}"
            raise StoreError(msg) from error

    def query(
        self, sql: str, parameters: dict[str, object] | None = None, *, readonly: bool = True
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run touchpath's own query with server-side {name:Type} parameters.

        Analysts' text never comes here: it goes through analyst_sql() (streams.store.sqlguard).
        """
        if readonly and WRITE_PATTERN.match(sql):
            msg = "only read queries are allowed here (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN)"
            raise StoreError(msg)
        settings = {"readonly": 1} if readonly else {}
        try:
            result = self.client.query(sql, parameters=parameters or {}, settings=settings)
        except Exception as error:
            raise StoreError(f"query failed: {error}") from error
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def analyst_sql(self, limits: SqlLimits | None = None, sessions: int = 2) -> GuardedSQL:
        """The guarded query path on new read-only sessions of this store (see streams.store.sqlguard)."""
        limits = limits or SqlLimits()
        connect = self.connect
        description = self.description

        def session() -> Any:
            if connect is None:
                msg = f"{description or 'this store'} cannot open analyst sessions"
                raise StoreError(msg)
            try:
                return connect(limits.settings())
            except Exception as error:
                msg = f"cannot open a read-only session on {description}: {error}"
                raise StoreError(msg) from error

        return GuardedSQL(session, limits, sessions)

    def insert_arrow_stream(
        self, table: schema.Table, stream: bytes, rows: int, settings: Mapping[str, object]
    ) -> None:
        """Insert an Arrow IPC stream of `rows` rows; ClickHouse parses it (no Python work per row)."""
        try:
            self.client.raw_insert(
                table.name, list(table.column_names), stream, settings=dict(settings), fmt="ArrowStream"
            )
        except Exception as error:
            msg = f"insert of {rows} rows into {table.name} failed: {error}"
            raise StoreError(msg) from error

    def command(
        self,
        sql: str,
        parameters: dict[str, object] | None = None,
        settings: Mapping[str, object] | None = None,
        *,
        what: str = "",
    ) -> None:
        """Run one of touchpath's own statements (DDL, mutations, INSERT ... SELECT); never analysts' text.

        `what` names the operation in the error (default: the statement's first words)."""
        try:
            self.client.command(sql, parameters=parameters or {}, settings=dict(settings or {}))
        except Exception as error:
            msg = f"{what or ' '.join(sql.split()[:4])} failed: {error}"
            raise StoreError(msg) from error

    def query_columns(self, sql: str, parameters: dict[str, object] | None = None) -> list[list[Any]]:
        """A read query's result as columns (for large pages: no per-row tuples)."""
        try:
            result = self.client.query(sql, parameters=parameters or {}, settings={"readonly": 1})
        except Exception as error:
            raise StoreError(f"query failed: {error}") from error
        return [list(column) for column in result.result_columns]

    def journey_states(self, scenario: str) -> list[bytes]:
        """The encoded journey states kept for a scenario (see EmbeddedRunner keep_state)."""
        _, rows = self.query(
            "SELECT state FROM journey_state FINAL WHERE scenario = {scenario:String}", {"scenario": scenario}
        )
        return [raw.encode() if isinstance(raw, str) else raw for (raw,) in rows]

    def rows(self, table: schema.Table, scenario: str) -> list[dict[str, Any]]:
        """A table's rows of one scenario as analysts read them (FINAL, deleted rows left out), in
        the table's key order."""
        deleted = " AND is_deleted = 0" if table.versioned else ""
        names, rows = self.query(
            f"SELECT * FROM {table.name} FINAL WHERE scenario = {{scenario:String}}{deleted} "
            f"ORDER BY {', '.join(table.order_by)}",
            {"scenario": scenario},
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def stored_event_ids(self, scenario: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids the scenario's touchpoint_events holds already."""
        if not event_ids:
            return set()
        _, rows = self.query(
            "SELECT event_id FROM touchpoint_events WHERE scenario = {scenario:String} "
            "AND event_id IN {ids:Array(String)}",
            {"scenario": scenario, "ids": sorted(set(event_ids))},
        )
        return {str(row[0]) for row in rows}

    def scalar(self, sql: str, parameters: dict[str, object] | None = None) -> Any:
        """The first value of the first row."""
        _, rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Release the client (and, embedded, the data dir lock)."""
        self.client.close()


def _skip_pandas_probe() -> None:
    """clickhouse-connect imports pandas (a second or more) on a process's first insert only to ask
    whether the data is a DataFrame; touchpath never inserts one, so unless pandas is loaded
    already, tell clickhouse-connect it is absent (a configuration it supports)."""
    if "pandas" not in sys.modules and "pd" not in vars(ch_options):
        ch_options.pd = None
        ch_options.pd_time_test = None


def private_dir(path: Path) -> None:
    """Create a data dir readable by its owner only (0700); warn when an existing one is wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "store.data_dir_readable",
            path=str(path),
            mode=oct(mode),
            fix=f"chmod -R go-rwx {path} (it holds customer data)",
        )


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
