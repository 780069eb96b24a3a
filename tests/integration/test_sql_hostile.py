"""Hostile SQL at the guard, `touchpath sql` and GET /v1/sql: refused with a reason, nothing touched."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.embedded.runner import EmbeddedRunner
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import EmbeddedSink, create_app
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.sqlguard import SqlLimits, SqlRefusedError

SQL_SECRET = "analyst-secret-0123456789"
INGEST_SECRET = "ingest-secret-0123456789"
CANARY_TEXT = "canary-7f3e9b-do-not-leak"
LIMITS = SqlLimits(max_execution_time_s=2, max_memory_bytes=64 * 1024**2, max_result_rows=1000)

WRITES = [
    "ALTER TABLE touchpoint_events DELETE WHERE 1 SETTINGS mutations_sync = 1",
    "ALTER TABLE bad_events UPDATE reason = 'x' WHERE 1",
    "ALTER TABLE deviations DROP PARTITION tuple()",
    "ALTER TABLE journey_instances ADD COLUMN evil UInt8",
    "DROP TABLE bad_events",
    "DROP TABLE IF EXISTS touchpoint_events SYNC",
    "DROP DATABASE default",
    "TRUNCATE TABLE touchpoint_events",
    "TRUNCATE ALL TABLES FROM default",
    "RENAME TABLE bad_events TO gone",
    "EXCHANGE TABLES bad_events AND deviations",
    "CREATE TABLE stolen ENGINE = Memory AS SELECT * FROM file('{canary}', 'LineAsString')",
    "CREATE TABLE t2 (a UInt8) ENGINE = Log",
    "CREATE VIEW v AS SELECT 1",
    "CREATE FUNCTION evil AS (x) -> x",
    "CREATE DICTIONARY d (k UInt64) PRIMARY KEY k SOURCE(FILE(path '{canary}' format 'TSV')) "
    "LAYOUT(FLAT()) LIFETIME(0)",
    "INSERT INTO FUNCTION file('{outside}/written.csv', 'CSV') SELECT 1",
    "INSERT INTO bad_events (reason) VALUES ('x')",
    "INSERT INTO touchpoint_events SELECT * FROM touchpoint_events",
    "DELETE FROM touchpoint_events WHERE 1",
    "UPDATE bad_events SET reason = 'x' WHERE 1",
    "OPTIMIZE TABLE touchpoint_events FINAL",
    "SYSTEM DROP MARK CACHE",
    "SYSTEM SHUTDOWN",
    "SYSTEM RELOAD DICTIONARIES",
    "GRANT ALL ON *.* TO default",
    "REVOKE SELECT ON *.* FROM default",
    "KILL QUERY WHERE 1",
    "SET readonly = 0",
    "USE system",
    "ATTACH TABLE bad_events",
    "DETACH TABLE bad_events",
    "UNDROP TABLE bad_events",
    "CHECK TABLE bad_events",
    "BACKUP TABLE bad_events TO File('{outside}/backup')",
    "RESTORE TABLE bad_events FROM File('{outside}/backup')",
    "CREATE USER mallory IDENTIFIED BY 'x'",
    "MOVE USER default TO local_directory",
    "BEGIN TRANSACTION",
    "CREATE TEMPORARY TABLE tt AS SELECT 1",
]
TABLE_FUNCTIONS = [
    "file('{canary}', 'LineAsString')",
    "file('/proc/self/environ', 'LineAsString')",
    "file('../../../../etc/passwd', 'LineAsString')",
    "fileCluster('default', '{canary}')",
    "url('http://127.0.0.1:{port}/leak', 'CSV', 'a String')",
    "urlCluster('default', 'http://127.0.0.1:{port}/x')",
    "s3('http://127.0.0.1:{port}/bucket/key.csv', 'CSV', 'a String')",
    "s3Cluster('default', 'http://127.0.0.1:{port}/b/k')",
    "hdfs('hdfs://127.0.0.1:{port}/x', 'CSV', 'a String')",
    "remote('127.0.0.1:{port}', system.one)",
    "remoteSecure('127.0.0.1:{port}', default.bad_events)",
    "cluster('default', system.one)",
    "clusterAllReplicas('default', system.one)",
    "executable('id', 'TSV', 'a String')",
    "input('a String')",
    "mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "mongodb('127.0.0.1:{port}', 'db', 't', 'u', 'p', 'a String')",
    "redis('127.0.0.1:{port}', 'k', 'k String')",
    "sqlite('{canary}', 't')",
    "jdbc('jdbc:x', 't')",
    "odbc('dsn', 't')",
    "merge('system', '^settings$')",
    "merge(currentDatabase(), '.*')",
    "dictionary('d')",
    "azureBlobStorage('http://127.0.0.1:{port}', 'c', 'b')",
    "iceberg('http://127.0.0.1:{port}/t')",
    "deltaLake('http://127.0.0.1:{port}/t')",
    "hudi('http://127.0.0.1:{port}/t')",
    "gcs('http://127.0.0.1:{port}/b/k')",
    "loop(system.one)",
    "view(SELECT * FROM system.settings)",
    "format(CSV, 'a\\n')",
]
TABLE_FUNCTION_PLACES = [
    "SELECT * FROM {tf}",
    "SELECT count() FROM touchpoint_events AS e JOIN {tf} AS x ON 1 = 1",
    "WITH x AS (SELECT * FROM {tf}) SELECT * FROM x",
    "SELECT 1 WHERE 1 IN (SELECT 1 FROM {tf})",
    "DESCRIBE TABLE {tf}",
    "EXPLAIN PIPELINE SELECT * FROM {tf}",
]
SCALARS = [
    "file('{canary}')",
    "file('/proc/self/environ')",
    "FILE('{canary}')",
    "`file`('{canary}')",
    "getSetting('max_memory_usage')",
    "getSettingOrDefault('custom_secret', '')",
    "getServerSetting('tcp_port')",
    "getMacro('replica')",
    "dictGet('d', 'a', toUInt64(1))",
    "dictGetOrDefault('d', 'a', toUInt64(1), 'x')",
    "dictHas('d', toUInt64(1))",
    "joinGet('j', 'v', 1)",
    "hasColumnInTable('127.0.0.1:{port}', 'default', 'bad_events', 'reason')",
    "sleep(3)",
    "sleepEachRow(1)",
    "logTrace('hello log')",
    "filesystemAvailable()",
    "url('http://127.0.0.1:{port}/')",
    "s3('http://127.0.0.1:{port}/b/k')",
    "remote('127.0.0.1:{port}')",
    "catboostEvaluate('{canary}', 1)",
    "addressToSymbol(1)",
    "getClientHTTPHeader('Authorization')",
    "currentProfiles()",
]
SCALAR_PLACES = [
    "SELECT {fn}",
    "SELECT length(toString({fn})) FROM system.one",
    "SELECT arrayMap(x -> concat(x, toString({fn})), ['a'])",
    "SELECT count() FROM touchpoint_events WHERE customer_id = toString({fn})",
    "SELECT * FROM (SELECT {fn} AS leak)",
]
SYSTEM_TABLES = [
    "settings",
    "server_settings",
    "processes",
    "query_log",
    "users",
    "grants",
    "macros",
    "clusters",
    "dictionaries",
    "disks",
    "merges",
    "mutations",
    "named_collections",
    "user_directories",
    "zookeeper",
    "text_log",
    "build_options",
    "parts",
]
OTHER = [
    "SELECT 1; DROP TABLE bad_events",
    "SELECT 1;DROP TABLE bad_events;",
    "SELECT 1 -- comment\n; TRUNCATE TABLE touchpoint_events",
    "SELECT 1 /* ; */ ; ALTER TABLE bad_events DELETE WHERE 1",
    "SELECT ';'; DROP TABLE bad_events",
    "SELECT 1; SELECT 2",
    "SELECT 1 INTO OUTFILE '{outside}/out.csv'",
    "SELECT 1 INTO OUTFILE '{outside}/out.csv' TRUNCATE",
    "SELECT 1 INTO OUTFILE '{outside}/out.csv' APPEND",
    "SELECT 1 INTO OUTFILE '../../{outside_name}/out.csv'",
    "SELECT 1 INTO OUTFILE '{outside}/out.gz' COMPRESSION 'gzip' LEVEL 3",
    "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{outside}/out.csv'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{outside}/out.csv'",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 0",
    "SELECT 1 SETTINGS allow_ddl = 1",
    "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)",
    "SELECT 1 FORMAT JSON",
    "SELECT 1 FORMAT TSVRaw",
    "SHOW PROCESSLIST",
    "SHOW SETTINGS LIKE '%'",
    "SHOW GRANTS",
    "SHOW USERS",
    "SHOW ACCESS",
    "SHOW CREATE USER default",
    "SHOW CREATE DICTIONARY d",
    "SHOW DICTIONARIES",
    "SHOW MERGES",
    "SHOW CLUSTERS",
    "SHOW FILESYSTEM CACHES",
    "SHOW ENGINES",
    "EXPLAIN AST DROP TABLE bad_events",
    "EXPLAIN SYNTAX SELECT * FROM system.settings",
    "SELECT count() FROM numbers(10) WHERE number IN system.settings",
    "SELECT * FROM INFORMATION_SCHEMA.COLUMNS AS c JOIN system.processes AS p ON 1 = 1",
    "SELECT number FROM numbers(5000)",
    "SELECT count() FROM numbers_mt(100000000000)",
    "SELECT groupArray(number) FROM numbers(50000000)",
    "SELECT repeat('x', 1000000) FROM numbers(500)",
    "SELECT " + "(" * 3000 + "1" + ")" * 3000,
    "SELECT 1 AS `a\n  Function file`",
    "SELECT 'unterminated",
    "",
    "   ",
    "\x00SELECT 1",
    "SELECT \u202e1",
    "💥",
    "SELECT " + "1 + " * 40000 + "1",
    "SELECT * FROM {t:Identifier}",
    "SELECT count() FROM ingest_signatures",
    "SELECT * FROM default.ingest_signatures",
]
PARAMS: dict[str, dict[str, str]] = {
    "SELECT * FROM {t:Identifier}": {"t": "system.settings"},
}
INJECTED_VALUE = "'); DROP TABLE bad_events; --"
GOOD = [
    "SELECT count() FROM touchpoint_events FINAL",
    "WITH p AS (SELECT persona FROM journey_instances FINAL) SELECT persona, count() FROM p GROUP BY persona",
    "SELECT reason, count() FROM bad_events GROUP BY reason ORDER BY reason",
    "SHOW TABLES",
    "DESCRIBE TABLE journey_instances",
    "EXPLAIN SELECT count() FROM deviations",
    "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
    "SELECT number FROM numbers(3) UNION ALL SELECT 7",
    "SELECT count() FROM information_schema.columns",
    "EXISTS TABLE bad_events",
    "SELECT sum(x) FROM values('x UInt8', 1, 2, 3)",
    "SELECT ';DROP TABLE bad_events' AS harmless_text",
]


def payloads(canary: Path, outside: Path, port: int) -> list[str]:
    """Every hostile query of this module, with paths and the listener's port filled in."""
    out = list(WRITES)
    out += [place.format(tf=tf) for tf in TABLE_FUNCTIONS for place in TABLE_FUNCTION_PLACES[:2]]
    out += [place.format(tf=tf) for tf in TABLE_FUNCTIONS[:8] for place in TABLE_FUNCTION_PLACES[2:]]
    out += [place.format(fn=fn) for fn in SCALARS for place in SCALAR_PLACES[:2]]
    out += [place.format(fn=fn) for fn in SCALARS[:6] for place in SCALAR_PLACES[2:]]
    out += [f"SELECT * FROM system.{name}" for name in SYSTEM_TABLES]
    out += [
        f"SELECT count() FROM bad_events WHERE reason IN (SELECT name FROM system.{n})" for n in SYSTEM_TABLES
    ]
    out += OTHER
    fill = {"canary": str(canary), "outside": str(outside), "outside_name": outside.name, "port": str(port)}
    # .replace, not .format: payloads keep their own braces ({t:Identifier}).
    filled = []
    for text in out:
        done = text
        for name, value in fill.items():
            done = done.replace("{" + name + "}", value)
        filled.append(done)
    return filled


@dataclass
class Listener:
    """A loopback TCP listener that counts every connection made to it."""

    port: int
    connections: int = 0


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    """Counts connections for the whole module; no payload may ever reach it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    found = Listener(server.getsockname()[1])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            found.connections += 1
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model: JourneyModel) -> tuple[Path, Path, Path]:
    """A data dir filled by a run, a canary file outside it, and an outside dir that must stay as it is."""
    root = tmp_path_factory.mktemp("hostile")
    data_dir, outside = root / "data", root / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text(CANARY_TEXT)
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        store.create_schema()
        lines = simulate(model, SimulationConfig(customers=40, days=4, seed=3, bad_rate=0.05)).lines
        EmbeddedRunner(JourneyEngine(model), store).feed(enumerate(lines, start=1), "file")
    finally:
        store.close()
    return data_dir, canary, outside


def fingerprint(store: ClickHouseProjectionStore) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent checksum of every table of the database."""
    _, tables = store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine != 'View' ORDER BY name"
    )
    out = {}
    for (name,) in tables:
        count, checksum = store.query(
            f"SELECT count(), groupBitXor(cityHash64(toString(tuple(*)))) FROM `{name}`"
        )[1][0]
        out[name] = (int(count), int(checksum))
    return out


def outside_state(outside: Path) -> dict[str, bytes]:
    """Every file under the outside dir and its bytes."""
    return {str(path): path.read_bytes() for path in sorted(outside.rglob("*")) if path.is_file()}


def test_guarded_path_refuses_every_payload_and_changes_nothing(
    world: tuple[Path, Path, Path], listener: Listener
) -> None:
    """Each hostile query is refused naming its rule; tables, files and the network stay untouched."""
    data_dir, canary, outside = world
    queries = payloads(canary, outside, listener.port)
    assert len(queries) >= 200
    store = ClickHouseProjectionStore.embedded(data_dir)
    guard = store.analyst_sql(LIMITS, sessions=1)
    try:
        before, files_before = fingerprint(store), outside_state(outside)
        for query in queries:
            with pytest.raises(SqlRefusedError) as refused:
                guard.run(query, dict(PARAMS.get(query, {})))
            assert refused.value.rule, query
            assert "refused" in str(refused.value), query
            assert CANARY_TEXT not in str(refused.value), query
        for query in GOOD:
            columns, _ = guard.run(query)
            assert columns, query
        # A bound parameter is a value, never SQL.
        assert guard.run("SELECT {x:String}", {"x": INJECTED_VALUE})[1] == [(INJECTED_VALUE,)]
        assert fingerprint(store) == before
        assert outside_state(outside) == files_before
        assert listener.connections == 0
    finally:
        guard.close()
        store.close()


def test_limits_name_the_limit(world: tuple[Path, Path, Path]) -> None:
    """Time, memory and result-size limits bite in chDB and the error names the limit."""
    data_dir, _, _ = world
    store = ClickHouseProjectionStore.embedded(data_dir)
    guard = store.analyst_sql(LIMITS, sessions=1)
    try:
        for query, rule in [
            ("SELECT count() FROM numbers_mt(100000000000)", "max_execution_time"),
            ("SELECT groupArray(number) FROM numbers(50000000)", "max_memory_usage"),
            ("SELECT number FROM numbers(5000)", "max_result_rows/max_result_bytes"),
        ]:
            with pytest.raises(SqlRefusedError) as refused:
                guard.run(query)
            assert refused.value.rule == rule
        # After every refusal the next query answers normally (a failed result leaves nothing behind).
        assert guard.run("SELECT 42")[1] == [(42,)]
    finally:
        guard.close()
        store.close()


def _sql(client: TestClient, query: str, params: dict[str, str] | None = None) -> object:
    query_string = urlencode({"q": query, **{f"param_{k}": v for k, v in (params or {}).items()}})
    headers = signed_headers("analyst", SQL_SECRET, query_string.encode())
    return client.get(f"/v1/sql?{query_string}", headers=headers)


def test_http_sql_answers_4xx_with_a_reason_and_changes_nothing(
    world: tuple[Path, Path, Path], listener: Listener, model: JourneyModel
) -> None:
    """GET /v1/sql: every payload gets 400 naming the rule, never 500; ingest keeps working afterwards."""
    data_dir, canary, outside = world
    store = ClickHouseProjectionStore.embedded(data_dir)
    sink = EmbeddedSink(JourneyEngine(model), store, sql=store.analyst_sql(LIMITS, sessions=2))
    app = create_app(
        sink,
        RequestAuthenticator({"shop": INGEST_SECRET.encode()}),
        registry=model.registry,
        sql_authenticator=RequestAuthenticator({"analyst": SQL_SECRET.encode()}),
    )
    try:
        before, files_before = fingerprint(store), outside_state(outside)
        with TestClient(app, raise_server_exceptions=False) as client:
            for query in payloads(canary, outside, listener.port):
                if len(query) > LIMITS.max_query_chars:
                    continue  # longer than any URL a client sends; the guard test covers the limit
                answer = _sql(client, query, PARAMS.get(query))
                assert answer.status_code == 400, (query, answer.status_code, answer.text)
                body = answer.json()
                assert body["error"] in {"bad_query"}, query
                assert body["detail"], query
                assert CANARY_TEXT not in answer.text
                assert "Traceback" not in answer.text
                # The next query is answered normally (the 500 after a refusal is gone).
            for query in GOOD:
                answer = _sql(client, query)
                assert answer.status_code == 200, (query, answer.text)
            body = (
                b'{"event_id":"e1","customer_id":"c1","occurred_at":"2026-03-02T09:00:00Z",'
                b'"channel":"web","touchpoint":"web.product_view"}'
            )
            posted = client.post(
                "/v1/events", content=body, headers=signed_headers("shop", INGEST_SECRET, body)
            )
            assert posted.status_code in {202, 400}, posted.text
        after = fingerprint(store)
        # The one accepted event is the only change: the SQL payloads themselves changed nothing.
        changed = {name for name in before if before[name] != after.get(name)}
        assert changed <= {
            "touchpoint_events",
            "journey_instances",
            "journey_steps",
            "deviations",
            "friction_signals",
            "bad_events",
            "conformance_per_persona_day",
            "friction_per_touchpoint_minute",
            "support_attribution",
        }
        assert set(after) == set(before)
        assert outside_state(outside) == files_before
        assert listener.connections == 0
    finally:
        sink.close()
        store.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; ALTER TABLE touchpoint_events DELETE WHERE 1 SETTINGS mutations_sync = 1; SELECT 2",
        "SELECT 1; DROP TABLE bad_events",
        "CHECK TABLE bad_events",
        "SELECT file('/proc/self/environ')",
        "SELECT 1 INTO OUTFILE 'evil.csv'",
        "SELECT * FROM system.settings",
        "SELECT number FROM numbers(5000)",
    ],
)
def test_cli_sql_exits_non_zero_with_the_reason(
    world: tuple[Path, Path, Path],
    query: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`touchpath sql` prints one line naming the refused rule and exits 1: no traceback, nothing written."""
    data_dir, _, _ = world
    monkeypatch.setenv("TOUCHPATH_SQL_MAX_ROWS", "1000")
    assert main(["sql", "--data-dir", str(data_dir), query]) == 1
    captured = capsys.readouterr()
    assert "refused by the readonly SQL guard" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (Path.cwd() / "evil.csv").exists()
