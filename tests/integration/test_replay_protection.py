"""A captured signed request cannot be replayed after a restart (serve) or to another replica (ingest)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import EmbeddedSink, create_app
from streams.ingest.signatures import KafkaSignatures, StoreSignatures
from streams.store.clickhouse import ClickHouseProjectionStore

SECRET = "ingest-secret-0123456789"
SQL_SECRET = "analyst-secret-0123456789"
BODY = orjson.dumps(
    {
        "event_id": "e-1",
        "customer_id": "c-1",
        "occurred_at": "2026-03-02T09:00:00Z",
        "channel": "web",
        "touchpoint": "web.product_page",
    }
)


def _serve(model: JourneyModel, data_dir: Path) -> tuple[TestClient, EmbeddedSink]:
    store = ClickHouseProjectionStore.embedded(data_dir)
    store.create_schema()
    signatures = StoreSignatures(store)
    sink = EmbeddedSink(JourneyEngine(model), store)
    app = create_app(
        sink,
        RequestAuthenticator({"shop": SECRET.encode()}, replay_store=signatures),
        registry=model.registry,
        sql_authenticator=RequestAuthenticator({"analyst": SQL_SECRET.encode()}, replay_store=signatures),
    )
    return TestClient(app), sink


def _stop(sink: EmbeddedSink) -> None:
    sink.close()
    sink.store.close()


def test_serve_refuses_a_replay_after_a_restart(model: JourneyModel, tmp_path: Path) -> None:
    """The same signed POST and GET /v1/sql, sent again after a restart, are refused as replayed."""
    headers = {"Content-Type": "application/json", **signed_headers("shop", SECRET, BODY)}
    query = urlencode({"q": "SELECT count() FROM touchpoint_events"})
    sql_headers = signed_headers("analyst", SQL_SECRET, query.encode())
    client, sink = _serve(model, tmp_path / "data")
    try:
        with client:
            assert client.post("/v1/events", content=BODY, headers=headers).status_code == 202
            assert client.get(f"/v1/sql?{query}", headers=sql_headers).status_code == 200
            assert client.post("/v1/events", content=BODY, headers=headers).json()["reason"] == "replayed"
    finally:
        _stop(sink)

    client, sink = _serve(model, tmp_path / "data")
    try:
        with client:
            again = client.post("/v1/events", content=BODY, headers=headers)
            assert again.status_code == 401
            assert again.json()["reason"] == "replayed"
            sql_again = client.get(f"/v1/sql?{query}", headers=sql_headers)
            assert (sql_again.status_code, sql_again.json()["reason"]) == (401, "replayed")
            # A fresh signature of the same body is fine (a legitimate retry is re-signed).
            fresh = {
                "Content-Type": "application/json",
                **signed_headers("shop", SECRET, BODY, int(time.time()) + 1),
            }
            assert client.post("/v1/events", content=BODY, headers=fresh).status_code == 202
    finally:
        _stop(sink)


@pytest.mark.kafka
def test_ingest_replicas_share_used_signatures_through_kafka(kafka_bootstrap: str) -> None:
    """Replica B refuses what replica A took; a replica started later refuses it from the topic."""
    topic = f"test-signatures-{uuid.uuid4().hex[:8]}"
    stores = [KafkaSignatures(kafka_bootstrap, topic, 300) for _ in range(2)]
    try:
        replica_a = RequestAuthenticator({"shop": SECRET.encode()}, replay_store=stores[0])
        replica_b = RequestAuthenticator({"shop": SECRET.encode()}, replay_store=stores[1])
        headers = signed_headers("shop", SECRET, BODY)
        args = (
            headers["X-Touchpath-Key"],
            headers["X-Touchpath-Timestamp"],
            headers["X-Touchpath-Signature"],
            BODY,
        )
        assert replica_a.verify(*args) is None
        # B learns it by following the topic (milliseconds; wait up to 10 s rather than hang).
        deadline = time.monotonic() + 10
        while not replica_b.is_used("shop", headers["X-Touchpath-Signature"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        verdict = replica_b.verify(*args)
        assert verdict is not None
        assert verdict.reason == "replayed"

        restarted_store = KafkaSignatures(kafka_bootstrap, topic, 300)
        stores.append(restarted_store)
        restarted = RequestAuthenticator({"shop": SECRET.encode()}, replay_store=restarted_store)
        refused = restarted.verify(*args)
        assert refused is not None
        assert refused.reason == "replayed"
    finally:
        for store in stores:
            store.close()
