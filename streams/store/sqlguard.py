"""Analysts' SQL: ClickHouse parses, allow-lists judge, a read-only session runs."""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from events.errors import TouchpathError

# Statement kinds (the root node of ClickHouse's own AST) an analyst may run.
QUERY_KINDS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})
STATEMENT_KINDS = QUERY_KINDS | frozenset(
    {
        "Explain",
        "DescribeQuery",
        "ShowTables",
        "ShowColumns",
        "ShowIndexes",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ExistsTableQuery",
    }
)
# ShowTables also carries SHOW SETTINGS / PROCESSLIST-like variants; only these forms are listings
# of names. Matched on ClickHouse's canonical formatting of the statement, not on the input text.
SHOW_TABLES_FORMS = ("SHOW TABLES", "SHOW FULL TABLES", "SHOW DATABASES")
# Table functions that generate data in the query itself; every other one reads or writes somewhere.
TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generateseries", "generate_series", "null"}
)
# Scalar functions that reach files, the network, processes, other servers, dictionaries, settings,
# the server log or that only burn a worker; names are compared lower-cased. Every table function's
# name is refused as a scalar too (file, url, s3, remote, ...), taken from the engine's own list.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "url",
        "hascolumnintable",
        "joinget",
        "joingetornull",
        "getsetting",
        "getsettingordefault",
        "getserversetting",
        "getmergetreesetting",
        "getmacro",
        "getclienthttpheader",
        "currentprofiles",
        "enabledprofiles",
        "defaultprofiles",
        "currentroles",
        "enabledroles",
        "defaultroles",
        "sleep",
        "sleepeachrow",
        "logtrace",
        "catboostevaluate",
        "modelevaluate",
        "naivebayesclassifier",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "trap",
        "input",
    }
)
DENIED_PREFIXES = (
    "dict",  # dictGet*, dictHas, ...: dictionaries load from files, URLs and other servers
    "file",
    "url",
    "s3",
    "hdfs",
    "remote",
    "cluster",
    "executable",
    "azure",
    "mysql",
    "postgres",
    "mongo",
    "redis",
    "sqlite",
    "odbc",
    "jdbc",
    "iceberg",
    "delta",
    "hudi",
    "kafka",
    "gcs",
)
# system tables that describe the schema only; the others expose settings, queries, users, logs.
SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "data_type_families",
        "formats",
        "time_zones",
    }
)
SCHEMA_DATABASES = frozenset({"information_schema", "INFORMATION_SCHEMA"})
# touchpath's own bookkeeping that is not analytics: used request signatures (replay protection).
PRIVATE_TABLES = frozenset({"ingest_signatures"})
_NODE = re.compile(r"^( *)(\S+)(.*?)(?: \(children (\d+)\))?$")
_ALIAS = re.compile(r" \(alias .*\)$")
# ClickHouse error code -> (the limit or rule it names, what to do)
_ERRORS = {
    159: ("max_execution_time", "the query ran longer than {max_execution_time_s} s; narrow it"),
    241: ("max_memory_usage", "the query needed more than {max_memory_bytes:,} bytes of memory; narrow it"),
    396: (
        "max_result_rows/max_result_bytes",
        "the result is larger than {max_result_rows:,} rows or {max_result_bytes:,} bytes; "
        "add LIMIT or aggregate",
    ),
    158: ("max_rows_to_read", "the query reads too many rows; narrow it"),
    164: ("readonly", "the session is read-only: writes and SETTINGS clauses are refused"),
}
_CODE = re.compile(r"Code: (\d+)\.")


class SqlRefusedError(TouchpathError):
    """A query the guard refused or a limit stopped; `rule` names the rule, limit or refused function."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"refused by the readonly SQL guard ({rule}): {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """Per-query limits of the analyst session (ClickHouse settings applied to the whole session)."""

    max_execution_time_s: int = 30
    max_memory_bytes: int = 1024**3
    max_result_rows: int = 100_000
    max_result_bytes: int = 64 * 1024**2
    max_threads: int = 1  # per query; with 2 SQL workers at most 2 scan threads compete with ingest
    thread_priority: int = 10  # nice value of query threads: ingest wins the CPU when both want it
    max_query_chars: int = 64 * 1024

    def settings(self) -> dict[str, object]:
        """Session settings, readonly last: once it is 1 no setting can change, not even by the query."""
        return {
            "max_execution_time": self.max_execution_time_s,
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_threads": self.max_threads,
            "os_thread_priority": self.thread_priority,
            "max_query_size": self.max_query_chars + 1024,
            "readonly": 1,
        }


@dataclass
class Node:
    """One node of ClickHouse's EXPLAIN AST dump: kind, the rest of its line, children."""

    kind: str
    text: str
    declared: int
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The node's name (function, identifier, literal) without its alias."""
        return _ALIAS.sub("", self.text).strip()

    def walk(self) -> Iterator[tuple[Node, Node | None]]:
        """Every node with its parent (iteratively: ClickHouse allows 1000 levels, Python's stack not)."""
        stack: list[tuple[Node, Node | None]] = [(self, None)]
        while stack:
            node, parent = stack.pop()
            yield node, parent
            stack.extend((child, node) for child in reversed(node.children))


def parse_ast(lines: list[str]) -> Node:
    """Build the tree from EXPLAIN AST lines (one space of indent per level)."""
    stack: list[tuple[int, Node]] = []
    root: Node | None = None
    for line in lines:
        match = _NODE.match(line)
        if match is None:
            raise SqlRefusedError("parse", "the query's syntax tree could not be read")
        depth = len(match.group(1))
        node = Node(match.group(2), match.group(3), int(match.group(4) or 0))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack:
            if root is not None or depth != 0:
                raise SqlRefusedError("parse", "the query's syntax tree could not be read")
            root = node
        elif depth != stack[-1][0] + 1:
            raise SqlRefusedError("parse", "the query's syntax tree could not be read")
        else:
            stack[-1][1].children.append(node)
        stack.append((depth, node))
    if root is None:
        raise SqlRefusedError("parse", "empty query")
    # Identifiers may hold line breaks, which split dump lines: insist every node has the children
    # it declares. (A split can only add nodes, which can only add refusals, but stay strict.)
    for node, _ in root.walk():
        if len(node.children) != node.declared:
            raise SqlRefusedError("parse", "names with line breaks or control characters are refused")
    return root


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the engine itself knows: table functions, databases and non-builtin (user) functions."""

    table_functions: frozenset[str]
    databases: frozenset[str]
    user_functions: frozenset[str]
    current_database: str
    # Views of the touchpath database: the analyst views are parameterized, called like a table
    # function (`conformance_by_persona(scenario='live')`), and read only the projections.
    views: frozenset[str] = frozenset()


def judge(root: Node, canonical: str, catalog: Catalog) -> None:
    """Raise SqlRefusedError unless the statement is an allowed read of the touchpath database."""
    kind = root.kind
    if kind not in STATEMENT_KINDS:
        shown = root.kind if not root.text.strip() else f"{root.kind} {root.name}"
        raise SqlRefusedError(
            "statement",
            f"only read queries are allowed (SELECT, WITH ... SELECT, SHOW TABLES, SHOW COLUMNS, "
            f"SHOW CREATE TABLE, DESCRIBE, EXISTS, EXPLAIN); this statement is {shown.strip()}",
        )
    if kind == "ShowTables" and not canonical.upper().startswith(SHOW_TABLES_FORMS):
        raise SqlRefusedError("statement", f"'{canonical[:40]}' is not allowed; SHOW TABLES or DATABASES is")
    if kind == "Explain":
        inner = [child for child in root.children if child.kind not in {"Identifier", "Literal"}]
        if len(inner) != 1 or inner[0].kind not in QUERY_KINDS:
            raise SqlRefusedError("statement", "EXPLAIN is allowed for SELECT queries only")
    for child in root.children:
        # Direct literals of a statement are INTO OUTFILE 'path' [COMPRESSION 'x' LEVEL n].
        if child.kind == "Literal":
            raise SqlRefusedError("into_outfile", "INTO OUTFILE is refused: results come back to you only")
        if child.kind == "Set":
            raise SqlRefusedError("settings", "SETTINGS clauses are refused: the session's limits are fixed")
    if kind in QUERY_KINDS | {"Explain"}:
        formats = [c.name for c in root.children if c.kind == "Identifier"]
        # clickhouse-connect appends FORMAT Native for transport; any other FORMAT is the query's own.
        if any(name != "Native" for name in formats):
            raise SqlRefusedError(
                "format", "FORMAT clauses are refused; choose the output format with --format"
            )
    for node, parent in root.walk():
        if node.kind == "Set":
            raise SqlRefusedError("settings", "SETTINGS clauses are refused: the session's limits are fixed")
        if node.kind == "Function":
            _judge_function(node.name, parent is not None and parent.kind == "TableExpression", catalog)
        elif node.kind in {"TableIdentifier", "Identifier"}:
            _judge_name(node.name, catalog)
            if node.kind == "TableIdentifier" and node.name.rsplit(".", 1)[-1] in PRIVATE_TABLES:
                raise SqlRefusedError(
                    f"table {node.name}", f"{node.name} is touchpath's own bookkeeping, not data"
                )


def _judge_function(name: str, as_table: bool, catalog: Catalog) -> None:
    lowered = name.lower()
    if as_table:
        if lowered not in TABLE_FUNCTIONS and name not in catalog.views:
            allowed = ", ".join(sorted(TABLE_FUNCTIONS))
            raise SqlRefusedError(
                f"function {name}",
                f"table function {name}() is refused: it reads or writes outside the projections; "
                f"allowed are {allowed}",
            )
        return
    if (
        lowered in DENIED_FUNCTIONS
        or lowered.startswith(DENIED_PREFIXES)
        or (lowered in catalog.table_functions and lowered not in TABLE_FUNCTIONS)
        or name in catalog.user_functions
    ):
        raise SqlRefusedError(
            f"function {name}",
            f"{name}() is refused: it reaches files, the network, processes, other servers, "
            "dictionaries or settings",
        )


def _judge_name(name: str, catalog: Catalog) -> None:
    parts = name.split(".")
    if len(parts) < 2:
        return
    database, table = parts[0], parts[1]
    if database == "system":
        if table not in SYSTEM_TABLES:
            raise SqlRefusedError(
                f"table system.{table}",
                f"system.{table} is refused; of system.* only {', '.join(sorted(SYSTEM_TABLES))} may be read",
            )
    elif database in catalog.databases and database not in {catalog.current_database, *SCHEMA_DATABASES}:
        raise SqlRefusedError(
            f"database {database}", f"only the {catalog.current_database} database may be read"
        )


def _describe_error(error: Exception, limits: SqlLimits) -> SqlRefusedError:
    message = str(error)
    match = _CODE.search(message)
    code = int(match.group(1)) if match else None
    first = " ".join(message.split())
    first = re.sub(r"\(version [^)]*\)", "", first)
    first = re.sub(r"\s*:?\s*In scope SELECT formatQuerySingleLine.*", "", first)[:400].strip()
    if code in _ERRORS:
        rule, detail = _ERRORS[code]
        return SqlRefusedError(rule, f"{detail.format(**_limit_values(limits))} ({first})")
    if code == 62:
        return SqlRefusedError("syntax", first)
    return SqlRefusedError("query", first or type(error).__name__)


def _limit_values(limits: SqlLimits) -> dict[str, object]:
    return {
        "max_execution_time_s": limits.max_execution_time_s,
        "max_memory_bytes": limits.max_memory_bytes,
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
    }


class GuardedSQL:
    """Runs analysts' queries on read-only sessions with fixed limits, after ClickHouse's parser judged them.

    `connect` returns a new clickhouse-connect client whose session already has readonly=1 and the
    limits (SqlLimits.settings(), readonly applied last). `sessions` of them run queries in parallel;
    a session that saw an error is replaced (chDB can keep bytes of a failed result on the handle).
    """

    def __init__(
        self, connect: Callable[[], Any], limits: SqlLimits | None = None, sessions: int = 2
    ) -> None:
        self.connect = connect
        self.limits = limits or SqlLimits()
        self._idle: queue.Queue[Any] = queue.Queue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._sessions = sessions
        self._closed = False

    @contextmanager
    def _session(self) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise SqlRefusedError("closed", "the server is shutting down")
            if self._idle.empty() and len(self._all) < self._sessions:
                client = self.connect()
                self._all.append(client)
                self._idle.put(client)
        client = self._idle.get()
        healthy = True
        try:
            yield client
        except Exception:
            healthy = False
            raise
        finally:
            if healthy:
                self._idle.put(client)
            else:
                self._replace(client)

    def _replace(self, client: Any) -> None:
        with self._lock:
            if client in self._all:
                self._all.remove(client)
        with contextlib.suppress(Exception):  # a broken session is dropped either way
            client.close()

    def catalog(self, client: Any) -> Catalog:
        """The engine's own lists, read once (they do not change while touchpath runs)."""
        if self._catalog is None:
            table_functions = {
                row[0].lower() for row in client.query("SELECT name FROM system.table_functions").result_rows
            }
            databases = {row[0] for row in client.query("SELECT name FROM system.databases").result_rows}
            users = {
                row[0]
                for row in client.query(
                    "SELECT name FROM system.functions WHERE origin != 'System'"
                ).result_rows
            }
            current = str(client.query("SELECT currentDatabase()").result_rows[0][0])
            views = {
                row[0]
                for row in client.query(
                    "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'"
                ).result_rows
            }
            self._catalog = Catalog(
                frozenset(table_functions), frozenset(databases), frozenset(users), current, frozenset(views)
            )
        return self._catalog

    def check(self, query: str, parameters: dict[str, object] | None = None) -> str:
        """The canonical text of an allowed query; SqlRefusedError naming the rule otherwise."""
        with self._session() as client:
            return self._check(client, query, parameters or {})

    def _check(self, client: Any, query: str, parameters: dict[str, object]) -> str:
        if not query.strip():
            raise SqlRefusedError("empty", "no query given")
        if len(query) > self.limits.max_query_chars:
            raise SqlRefusedError(
                "max_query_chars", f"the query is longer than {self.limits.max_query_chars:,} characters"
            )
        if "\x00" in query:
            raise SqlRefusedError("syntax", "the query contains a NUL character")
        catalog = self.catalog(client)
        try:
            # formatQuery parses exactly one statement (it refuses "multi-statements") and prints it
            # canonically; the canonical text is what is judged and what runs.
            canonical = str(
                client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": query}).result_rows[
                    0
                ][0]
            )
            lines = [
                str(row[0])
                for row in client.query(f"EXPLAIN AST {canonical}", parameters=parameters).result_rows
            ]
        except SqlRefusedError:
            raise
        except Exception as error:
            raise _describe_error(error, self.limits) from None
        judge(parse_ast(lines), canonical, catalog)
        return canonical

    def run(
        self, query: str, parameters: dict[str, object] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Judge and run one query; columns and rows, or SqlRefusedError naming the rule or limit."""
        parameters = parameters or {}
        with self._session() as client:
            try:
                canonical = self._check(client, query, parameters)
                result = client.query(canonical, parameters=parameters)
                return list(result.column_names), [tuple(row) for row in result.result_rows]
            except TouchpathError:
                raise
            except Exception as error:  # whatever the driver raises is a refusal with its reason
                raise _describe_error(error, self.limits) from None

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            self._closed = True
            clients, self._all = list(self._all), []
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()
