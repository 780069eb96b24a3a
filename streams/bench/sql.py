"""`touchpath bench sql`: how much heavy analyst SQL delays ingest on `touchpath serve` (prints figures)."""

from __future__ import annotations

import http.client
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from projections.journeys import JourneyModel
from streams.bench.ingest import child_server, percentile, valid_events
from streams.common.settings import Settings
from streams.ingest.auth import signed_headers

# A scan that keeps an SQL worker busy until the session's max_execution_time stops it.
HEAVY_SQL = "SELECT sum(cityHash64(number)) FROM numbers(100000000000)"


@contextmanager
def serve_process(
    data_dir: Path, ingest: tuple[str, str], sql: tuple[str, str], sql_timeout: int
) -> Iterator[str]:
    """`touchpath serve` in a child process; yields its base URL."""
    env = {
        "TOUCHPATH_INGEST_KEYS": f"{ingest[0]}:{ingest[1]}",
        "TOUCHPATH_SQL_KEYS": f"{sql[0]}:{sql[1]}",
        "TOUCHPATH_INGEST_RATE_LIMIT": "0",
        "TOUCHPATH_SQL_TIMEOUT_S": str(sql_timeout),
        "TOUCHPATH_DATA_DIR": str(data_dir),
    }
    with child_server("serve", env) as (url, _):
        yield url


def _ingest(port: int, bodies: list[bytes], key: tuple[str, str]) -> tuple[list[float], int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies, failures = [], 0
    try:
        for body in bodies:
            headers = {"Content-Type": "application/json", **signed_headers(key[0], key[1], body)}
            started = time.perf_counter()
            connection.request("POST", "/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            failures += response.status != 202
    finally:
        connection.close()
    return latencies, failures


def _sql_load(port: int, key: tuple[str, str], stop: threading.Event, answers: dict[int, int]) -> None:
    lock = threading.Lock()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        while not stop.is_set():
            query = urlencode({"q": HEAVY_SQL})
            # Each request is signed afresh with a distinct timestamp-and-payload pair.
            query += f"&nonce={secrets.token_hex(4)}"
            connection.request(
                "GET", f"/v1/sql?{query}", headers=signed_headers(key[0], key[1], query.encode())
            )
            response = connection.getresponse()
            response.read()
            with lock:
                answers[response.status] = answers.get(response.status, 0) + 1
            if response.status == 429:
                time.sleep(0.5)
    finally:
        connection.close()


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "max_ms": round(max(latencies, default=0.0) * 1000, 1),
    }


def bench_sql(
    model: JourneyModel, requests: int, batch: int, sql_clients: int, sql_timeout: int
) -> dict[str, Any]:
    """Ingest latency alone and under heavy SQL, with the SQL answers seen meanwhile."""
    pairs = valid_events(model, 2 * requests * batch)
    bodies = [
        b"[" + b",".join(v for _, v in pairs[i : i + batch]) + b"]" for i in range(0, len(pairs), batch)
    ]
    ingest_key = ("bench", secrets.token_hex(16))
    sql_key = ("analyst", secrets.token_hex(16))
    with (
        tempfile.TemporaryDirectory(prefix="touchpath-bench-sql-") as data_dir,
        serve_process(Path(data_dir) / "data", ingest_key, sql_key, sql_timeout) as url,
    ):
        port = int(url.rsplit(":", 1)[1])
        alone, failed_alone = _ingest(port, bodies[:requests], ingest_key)
        stop = threading.Event()
        answers: dict[int, int] = {}
        clients = [
            threading.Thread(target=_sql_load, args=(port, sql_key, stop, answers), daemon=True)
            for _ in range(sql_clients)
        ]
        for client in clients:
            client.start()
        time.sleep(1.0)  # let the scans start
        loaded, failed_loaded = _ingest(port, bodies[requests : 2 * requests], ingest_key)
        stop.set()
        for client in clients:
            client.join(timeout=sql_timeout + 30)
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "events_per_request": batch,
        "requests_per_phase": requests,
        "sql_clients": sql_clients,
        "sql_workers": Settings().sql_workers,
        "sql_max_execution_time_s": sql_timeout,
        "ingest_alone": _summary(alone),
        "ingest_with_heavy_sql": _summary(loaded),
        "ingest_failures": failed_alone + failed_loaded,
        "sql_answers_by_status": {str(k): v for k, v in sorted(answers.items())},
    }
    figures["p95_delay_ms"] = round(
        figures["ingest_with_heavy_sql"]["p95_ms"] - figures["ingest_alone"]["p95_ms"], 1
    )
    return figures
