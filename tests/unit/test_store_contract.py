"""One contract for every projection store: chDB and the in-memory fake read back alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from projections import schema
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.native import native_available
from projections.native_engine import NativeEngine
from streams.embedded.runner import EmbeddedRunner, restore_state
from streams.store.arrow_rows import decode, encode_rows
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.columns import ColumnBatch
from streams.store.fake import InMemoryProjectionStore
from streams.store.protocol import ProjectionStore
from tests.conftest import event_line

T0_MS = 1_772_445_600_000  # 2026-03-02T10:00:00Z


def _event(
    scenario: str, event_id: str, customer: str = "c1", source: str | None = None
) -> tuple[object, ...]:
    return (scenario, event_id, customer, T0_MS, "web", "web.cart", "web-team", None, None, None, None,
            None, None, "{}", source)  # fmt: skip


def _state(customer: str, state: bytes, version: int, deleted: int = 0) -> tuple[object, ...]:
    return ("s1", customer, state, version, deleted)


class StoreContract:
    """The behaviour every ProjectionStore adapter has; subclasses provide the store."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        raise NotImplementedError

    def test_rows_are_read_back_by_scenario_with_times_as_datetimes(self, store: ProjectionStore) -> None:
        store.insert_rows(
            schema.TOUCHPOINT_EVENTS, [_event("s1", "e2"), _event("s1", "e1"), _event("s2", "e3")]
        )
        rows = store.rows(schema.TOUCHPOINT_EVENTS, "s1")
        assert [row["event_id"] for row in rows] == ["e1", "e2"]
        assert rows[0]["occurred_at"] == datetime(2026, 3, 2, 10)  # naive UTC, as ClickHouse answers
        assert (rows[0]["persona"], rows[0]["attributes"], rows[0]["owner_team"]) == (None, "{}", "web-team")

    def test_the_highest_version_wins_and_a_deleted_row_hides_its_key(self, store: ProjectionStore) -> None:
        store.insert_rows(schema.JOURNEY_STATE, [_state("c1", b"old", 1), _state("c2", b"kept", 1)])
        store.insert_rows(
            schema.JOURNEY_STATE, [_state("c1", b"new", 2), _state("c2", b"gone", 2, deleted=1)]
        )
        store.insert_rows(schema.JOURNEY_STATE, [_state("c1", b"stale", 1)])  # late arrival of an old version
        assert [(row["customer_id"], row["state"]) for row in store.rows(schema.JOURNEY_STATE, "s1")] == [
            ("c1", "new")
        ]
        assert store.journey_states("s1") == [b"new"]
        assert store.journey_states("other") == []

    def test_an_unversioned_key_keeps_its_last_insert(self, store: ProjectionStore) -> None:
        store.insert_rows(schema.TOUCHPOINT_EVENTS, [_event("s1", "e1", source="first")])
        store.insert_rows(schema.TOUCHPOINT_EVENTS, [_event("s1", "e1", source="second")])
        assert [row["source"] for row in store.rows(schema.TOUCHPOINT_EVENTS, "s1")] == ["second"]

    def test_a_repeated_token_inserts_nothing(self, store: ProjectionStore) -> None:
        rows = [_event("s1", "e1"), _event("s1", "e2")]
        store.insert_rows(schema.TOUCHPOINT_EVENTS, rows, token="batch-1")
        store.insert_rows(schema.TOUCHPOINT_EVENTS, rows, token="batch-1")
        store.insert_rows(schema.TOUCHPOINT_EVENTS, [_event("s1", "e3")], token="batch-2")
        count = "SELECT count() FROM touchpoint_events WHERE scenario = {scenario:String}"
        assert store.scalar(count, {"scenario": "s1"}) == 3

    def test_stored_event_ids_look_in_one_scenario(self, store: ProjectionStore) -> None:
        store.insert_rows(schema.TOUCHPOINT_EVENTS, [_event("s1", "e1"), _event("s2", "e2")])
        assert store.stored_event_ids("s1", ["e1", "e2", "e9"]) == {"e1"}
        assert store.stored_event_ids("s1", []) == set()

    def test_the_embedded_runner_resumes_from_the_store(
        self, store: ProjectionStore, model: JourneyModel
    ) -> None:
        """Kept states let a second run continue the journeys: re-sent events are duplicates."""
        lines = [
            event_line("e1", "c1", "email.campaign", 0, persona="online_buyer"),
            event_line("e2", "c1", "web.product_page", 10),
            b"{broken",
        ]
        first = EmbeddedRunner(JourneyEngine(model), store, keep_state=True).feed(enumerate(lines, 1), "a")
        assert (first.accepted, first.bad) == (2, 1)
        engine = JourneyEngine(model)
        assert restore_state(engine, store) == 1
        again = EmbeddedRunner(engine, store, keep_state=True).feed(
            enumerate([lines[1], event_line("e3", "c1", "web.cart", 20)], 1), "b"
        )
        assert (again.accepted, again.duplicates, again.bad) == (2, 1, 0)
        (instance,) = store.rows(schema.JOURNEY_INSTANCES, "live")
        assert instance["path"] == ["email.campaign", "web.product_page", "web.cart"]
        (bad,) = store.rows(schema.BAD_EVENTS, "live")
        assert (bad["source"], bad["position"], bad["reason"], bad["raw"]) == (
            "a",
            3,
            "malformed_json",
            "{broken",
        )
        assert (
            store.scalar(
                "SELECT count() FROM touchpoint_events FINAL WHERE scenario = {s:String}", {"s": "live"}
            )
            == 3
        )


class TestInMemoryStore(StoreContract):
    """The fake: no ClickHouse, the same answers."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        fake = InMemoryProjectionStore()
        fake.create_schema()
        yield fake
        fake.close()


class TestChdbStore(StoreContract):
    """The embedded ClickHouse (chDB) behind ClickHouseProjectionStore."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        chdb = ClickHouseProjectionStore.embedded(tmp_path)
        chdb.create_schema()
        yield chdb
        chdb.close()


class ArrowContract:
    """Arrow writes (the native engine's path) keep the contract: the same rows as tuples."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        raise NotImplementedError

    def test_arrow_rows_read_back_as_their_tuples_would(self, store: ProjectionStore) -> None:
        tuples = [_event("s1", "e2"), _event("s1", "e1", source="file")]
        store.insert_rows(schema.TOUCHPOINT_EVENTS, tuples)
        blob = encode_rows(schema.TOUCHPOINT_EVENTS, [("s2", *row[1:]) for row in tuples])
        assert blob is not None
        batch = ColumnBatch()
        for record_batch in decode(blob).to_batches():
            batch.add_arrow(schema.TOUCHPOINT_EVENTS, record_batch)
        batch.add(schema.JOURNEY_STATE, _state("c1", b"kept", 1))
        assert store.write(batch) == 3
        as_tuples = store.rows(schema.TOUCHPOINT_EVENTS, "s1")
        assert [{**row, "scenario": "s1"} for row in store.rows(schema.TOUCHPOINT_EVENTS, "s2")] == as_tuples
        assert store.journey_states("s1") == [b"kept"]

    def test_an_arrow_insert_repeating_a_token_inserts_nothing(self, store: ProjectionStore) -> None:
        blob = encode_rows(schema.TOUCHPOINT_EVENTS, [_event("s1", "e1"), _event("s1", "e2")])
        assert blob is not None
        store.insert_arrow(schema.TOUCHPOINT_EVENTS, decode(blob), token="batch-1")
        store.insert_arrow(schema.TOUCHPOINT_EVENTS, decode(blob), token="batch-1")
        count = "SELECT count() FROM touchpoint_events WHERE scenario = {scenario:String}"
        assert store.scalar(count, {"scenario": "s1"}) == 2

    @pytest.mark.skipif(not native_available(), reason="the native extension is not built")
    def test_the_native_runner_writes_arrow_and_resumes_from_the_store(
        self, store: ProjectionStore, model: JourneyModel
    ) -> None:
        """The native engine's Arrow rows and kept states: a second run (on a writer thread)
        continues the journeys, re-sent events are duplicates."""
        lines = [
            event_line("e1", "c1", "email.campaign", 0, persona="online_buyer"),
            event_line("e2", "c1", "web.product_page", 10),
            b"{broken",
        ]
        first = EmbeddedRunner(NativeEngine(model), store, keep_state=True).feed(enumerate(lines, 1), "a")
        assert (first.accepted, first.bad, first.rows_written > 3) == (2, 1, True)
        engine = NativeEngine(model)
        assert restore_state(engine, store) == 1
        again = EmbeddedRunner(engine, store, keep_state=True, overlap_writes=True).feed(
            enumerate([lines[1], event_line("e3", "c1", "web.cart", 20)], 1), "b"
        )
        assert (again.accepted, again.duplicates, again.bad) == (2, 1, 0)
        (instance,) = store.rows(schema.JOURNEY_INSTANCES, "live")
        assert instance["path"] == ["email.campaign", "web.product_page", "web.cart"]
        (bad,) = store.rows(schema.BAD_EVENTS, "live")
        assert (bad["source"], bad["reason"]) == ("a", "malformed_json")
        events = store.rows(schema.TOUCHPOINT_EVENTS, "live")
        assert [(row["event_id"], row["occurred_at"]) for row in events] == [
            ("e1", datetime(2026, 3, 2, 9)),
            ("e2", datetime(2026, 3, 2, 9, 10)),
            ("e3", datetime(2026, 3, 2, 9, 20)),
        ]


class TestInMemoryStoreArrow(ArrowContract):
    """The fake takes Arrow batches as the engines' tuples."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        fake = InMemoryProjectionStore()
        fake.create_schema()
        yield fake
        fake.close()


class TestChdbStoreArrow(ArrowContract):
    """chDB takes them as one Arrow stream per table."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ProjectionStore]:
        chdb = ClickHouseProjectionStore.embedded(tmp_path)
        chdb.create_schema()
        yield chdb
        chdb.close()
