"""`touchpath serve` with TOUCHPATH_ENGINE=native: the same requests store the same rows in every
table, kept journey states included, as with the Python engine, also across a restart that
switches the engine."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from projections import schema
from projections.journeys import JourneyModel
from projections.native import native_available
from projections.native_engine import NativeEngine
from streams.common.engines import EngineKind, journey_engine
from streams.embedded.run import continue_journeys
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import EmbeddedSink, create_app
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

SECRET = "ingest-secret-0123456789"


def _serve(model: JourneyModel, data_dir: Path, kind: EngineKind, lines: list[bytes]) -> dict[str, int]:
    """One `serve` lifetime as the CLI builds it (resumed engine of the kind), posting lines in
    requests of 50; returns how many events each answer counted."""
    store = ClickHouseProjectionStore.embedded(data_dir)
    store.create_schema()
    engine = journey_engine(model, "live", kind)
    assert isinstance(engine, NativeEngine) == (kind == "native")
    continue_journeys(engine, store)
    sink = EmbeddedSink(engine, store, ClickHouseProjectionStore.embedded(data_dir))
    app = create_app(sink, RequestAuthenticator({"shop": SECRET.encode()}), registry=model.registry)
    answered = {"accepted": 0, "rejected": 0}
    try:
        with TestClient(app) as client:
            for start in range(0, len(lines), 50):
                body = b"\n".join(lines[start : start + 50])
                headers = {"Content-Type": "application/x-ndjson", **signed_headers("shop", SECRET, body)}
                answer = client.post("/v1/events", content=body, headers=headers)
                assert answer.status_code in {202, 400}, answer.text
                for name in answered:
                    answered[name] += int(answer.json()[name])
    finally:
        sink.close()
        assert sink.reader is not None
        sink.reader.close()
        store.close()
    return answered


def _every_table(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows (bad_events without its source, which names the HTTP request)."""
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        out = {}
        for table in schema.TABLES:
            names = [name for name in table.column_names if (table.name, name) != ("bad_events", "source")]
            columns = ", ".join(names)
            _, rows = store.query(f"SELECT {columns} FROM {table.name} FINAL ORDER BY {columns}")
            out[table.name] = rows
        return out
    finally:
        store.close()


def test_native_serve_stores_what_the_python_serve_stores(model: JourneyModel, tmp_path: Path) -> None:
    """Shuffled traffic with duplicates and bad lines over two lifetimes of `serve`: native, python,
    and python then native (the native engine continues the states the Python one kept) agree in
    every table, row versions and journey states included, and in what each answer said."""
    lines = simulate(model, SimulationConfig(customers=120, days=10, seed=29, bad_rate=0.02)).lines
    random.Random(3).shuffle(lines)
    lines += lines[:40]  # re-sent: duplicates
    split = len(lines) // 2
    runs: dict[str, tuple[EngineKind, EngineKind]] = {
        "python": ("python", "python"),
        "native": ("native", "native"),
        "switched": ("python", "native"),
    }
    answers, stored = {}, {}
    for name, kinds in runs.items():
        data_dir = tmp_path / name
        first = _serve(model, data_dir, kinds[0], lines[:split])
        second = _serve(model, data_dir, kinds[1], lines[split:])
        answers[name] = (first, second)
        stored[name] = _every_table(data_dir)
    reference = stored["python"]
    assert reference["journey_instances"], "journeys"
    assert reference["deviations"], "that deviate"
    assert reference["bad_events"], "bad lines"
    assert reference["journey_state"], "kept states"
    assert answers["python"][1]["rejected"] > 0
    for name in ("native", "switched"):
        assert answers[name] == answers["python"], name
        for table in schema.TABLES:
            assert stored[name][table.name] == reference[table.name], (name, table.name)
