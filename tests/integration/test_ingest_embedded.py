"""The embedded server: HTTP ingest into engine + chDB gives what `touchpath run` gives; SQL is read-only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from projections import schema
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.embedded.run import continue_journeys, run_file
from streams.embedded.runner import EmbeddedRunner
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import EmbeddedSink, create_app
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

INGEST_SECRET = "ingest-secret-0123456789"
SQL_SECRET = "analyst-secret-0123456789"
COUNTS = {
    "events": "SELECT count() FROM touchpoint_events FINAL",
    "instances": "SELECT count() FROM journey_instances FINAL",
    "completed": "SELECT countIf(status = 'completed') FROM journey_instances FINAL",
    "deviations": "SELECT count() FROM deviations FINAL",
    "friction": "SELECT count() FROM friction_signals FINAL",
    "support": "SELECT count() FROM support_attribution FINAL",
    "bad": "SELECT count() FROM bad_events FINAL",
}


def _sql(
    client: TestClient, query: str, key: tuple[str, str] = ("analyst", SQL_SECRET), **params: str
) -> object:
    query_string = urlencode({"q": query, **{f"param_{k}": v for k, v in params.items()}})
    headers = signed_headers(key[0], key[1], query_string.encode())
    return client.get(f"/v1/sql?{query_string}", headers=headers)


@pytest.fixture(scope="module")
def lines(model: JourneyModel) -> list[bytes]:
    """Simulated input with duplicates, late and corrupt lines."""
    return simulate(model, SimulationConfig(customers=80, days=6, seed=5, bad_rate=0.02)).lines


def _post_all(client: TestClient, lines: list[bytes]) -> tuple[int, int]:
    accepted = rejected = 0
    for start in range(0, len(lines), 100):
        body = b"\n".join(lines[start : start + 100])
        headers = {"Content-Type": "application/x-ndjson", **signed_headers("shop", INGEST_SECRET, body)}
        answer = client.post("/v1/events", content=body, headers=headers)
        assert answer.status_code in {202, 400}
        accepted += answer.json()["accepted"]
        rejected += answer.json()["rejected"]
    return accepted, rejected


def _server(model: JourneyModel, data_dir: Path) -> tuple[TestClient, EmbeddedSink]:
    """The `serve` app as the CLI builds it: resumed engine, writer store and a reader for SQL."""
    store = ClickHouseProjectionStore.embedded(data_dir)
    store.create_schema()
    engine = JourneyEngine(model)
    continue_journeys(engine, store)
    sink = EmbeddedSink(engine, store, ClickHouseProjectionStore.embedded(data_dir))
    app = create_app(
        sink,
        RequestAuthenticator({"shop": INGEST_SECRET.encode()}),
        registry=model.registry,
        sql_authenticator=RequestAuthenticator({"analyst": SQL_SECRET.encode()}),
    )
    return TestClient(app), sink


def _stop(sink: EmbeddedSink) -> None:
    sink.close()
    assert sink.reader is not None
    sink.reader.close()
    sink.store.close()


def test_http_ingest_across_a_restart_builds_the_same_projections_as_run(
    model: JourneyModel, lines: list[bytes], tmp_path: Path
) -> None:
    """Posting a file's lines to `serve`, restarted halfway, gives the same projections as `touchpath run`."""
    half = len(lines) // 2
    client, sink = _server(model, tmp_path / "served")
    try:
        with client:
            accepted, rejected = _post_all(client, lines[:half])
    finally:
        _stop(sink)

    client, sink = _server(model, tmp_path / "served")
    try:
        with client:
            more_accepted, more_rejected = _post_all(client, lines[half:])
            accepted, rejected = accepted + more_accepted, rejected + more_rejected
            served = {}
            for name, query in COUNTS.items():
                response = _sql(client, query)
                assert response.status_code == 200, response.text
                served[name] = response.json()["rows"][0][0]
            bound = _sql(
                client, "SELECT count() FROM bad_events FINAL WHERE reason = {r:String}", r="malformed_json"
            )
            assert bound.json()["rows"][0][0] > 0
            assert _sql(client, "DROP TABLE touchpoint_events").json()["error"] == "bad_query"
            assert _sql(client, "SELECT 1", key=("shop", INGEST_SECRET)).status_code == 401
            assert client.get("/v1/sql?q=SELECT+1").status_code == 401
    finally:
        _stop(sink)
    assert accepted + rejected == len(lines)
    assert served["bad"] == rejected > 0

    store = ClickHouseProjectionStore.embedded(tmp_path / "run")
    try:
        store.create_schema()
        EmbeddedRunner(JourneyEngine(model), store).feed(enumerate(lines, start=1), "file")
        ran = {name: int(store.scalar(query)) for name, query in COUNTS.items()}
    finally:
        store.close()
    assert served == ran
    assert ran["instances"] > 0
    assert ran["deviations"] > 0


def _projections(store: ClickHouseProjectionStore) -> dict[str, list[object]]:
    """Every projection table as analysts read it, without row versions (they count writes, which
    differ: serve writes per request); bad_events by what was refused (serve names sources by request)."""
    tables: dict[str, list[object]] = {}
    for table in schema.JOURNEY_PROJECTIONS:
        rows = store.rows(table, "live")
        tables[table.name] = [
            {k: v for k, v in row.items() if k not in {"version", "is_deleted"}} for row in rows
        ]
    bad = store.rows(schema.BAD_EVENTS, "live")
    tables["bad_events"] = sorted((row["reason"], row["field"], row["detail"], row["raw"]) for row in bad)
    return tables


@pytest.mark.parametrize("states_kept", [True, False], ids=["states kept", "data dir from before states"])
def test_serve_restarted_mid_journeys_writes_every_projection_as_one_run_would(
    model: JourneyModel, lines: list[bytes], tmp_path: Path, states_kept: bool
) -> None:
    """Events split over two `serve` lifetimes give row for row the projections of one `run` over all,
    also when the first lifetime kept no journey states (serve before it ran on the embedded runner)."""
    split = len(lines) // 3
    for part in (lines[:split], lines[split:]):
        client, sink = _server(model, tmp_path / "served")
        try:
            with client:
                _post_all(client, part)
            if not states_kept:
                sink.store.command("TRUNCATE TABLE journey_state")
        finally:
            _stop(sink)
    served_store = ClickHouseProjectionStore.embedded(tmp_path / "served")
    try:
        served = _projections(served_store)
    finally:
        served_store.close()

    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    store = ClickHouseProjectionStore.embedded(tmp_path / "run")
    try:
        store.create_schema()
        run_file(model, store, str(source), not_after_ms=None)
        ran = _projections(store)
    finally:
        store.close()
    assert all(ran[name] for name in ("touchpoint_events", "journey_instances", "deviations", "bad_events"))
    for name, rows in ran.items():
        assert served[name] == rows, name
