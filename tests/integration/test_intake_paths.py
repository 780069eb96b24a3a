"""`serve` and `run` settle too-late events alike: already stored is a duplicate, else too_late."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events.errors import BadReason
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.embedded.run import run_file
from streams.embedded.runner import EmbeddedRunner, restore_state
from streams.ingest.http import Batch, EmbeddedSink, IngestLimits, split_events
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.conftest import event_line

DAY = 24 * 60
FIRST = [
    event_line("c1-1", "c1", "email.campaign", 0, persona="online_buyer"),
    event_line("c1-2", "c1", "web.product_page", 10),
    event_line("c1-3", "c1", "web.cart", 20),
    event_line("c9-1", "c9", "web.cart", 60 * DAY),  # moves time on: c1's journey is final
]
LATE = [event_line("c1-2", "c1", "web.product_page", 10), event_line("c1-new", "c1", "web.product_page", 15)]
BAD_SQL = "SELECT source, position, reason FROM bad_events FINAL ORDER BY source, position"


def _post(model: JourneyModel, sink: EmbeddedSink, lines: list[bytes], source: str) -> dict[int, BadReason]:
    batch = split_events(b"\n".join(lines), None, IngestLimits(), model.registry)
    assert isinstance(batch, Batch)
    verdicts = asyncio.run(sink.submit(batch, source))
    return {index: rejection.reason for index, rejection in verdicts.items()}


def test_serve_takes_a_resent_settled_event_as_a_duplicate_as_run_does(
    model: JourneyModel, tmp_path: Path
) -> None:
    """A re-sent event of a final journey is accepted (it is stored); a new one there is too_late."""
    store = ClickHouseProjectionStore.embedded(tmp_path / "serve")
    store.create_schema()
    sink = EmbeddedSink(JourneyEngine(model), store)
    try:
        assert _post(model, sink, FIRST, "http:shop/1") == {}
        assert _post(model, sink, LATE, "http:shop/2") == {1: BadReason.TOO_LATE}
        served = store.query(BAD_SQL)[1]
        counters = sink.engine.counters
        assert (counters.accepted, counters.duplicates, counters.bad) == (5, 1, 1)
    finally:
        sink.close()
        store.close()
    assert served == [("http:shop/2", 1, "too_late")]

    run_store = ClickHouseProjectionStore.embedded(tmp_path / "run")
    run_store.create_schema()
    try:
        runner = EmbeddedRunner(JourneyEngine(model), run_store)
        runner.feed(enumerate(FIRST, start=0), "file")
        stats = runner.feed(enumerate(LATE, start=0), "late")
        assert (stats.accepted, stats.duplicates, stats.bad) == (5, 1, 1)
        assert run_store.query(BAD_SQL)[1] == [("late", 1, "too_late")]
    finally:
        run_store.close()


def test_after_a_restart_serve_settles_too_late_events_as_a_second_run_does(
    model: JourneyModel, tmp_path: Path
) -> None:
    """A restarted `serve` continues from the states it kept: the re-sent event is a duplicate and
    the new one too_late, exactly as when `run` is given the two files one after the other."""
    for lines, source in ((FIRST, "http:shop/1"), (LATE, "http:shop/2")):
        store = ClickHouseProjectionStore.embedded(tmp_path / "serve")
        store.create_schema()
        engine = JourneyEngine(model)
        restore_state(engine, store)
        sink = EmbeddedSink(engine, store)
        try:
            served = _post(model, sink, lines, source)
            counters = engine.counters
        finally:
            sink.close()
            store.close()
    assert served == {1: BadReason.TOO_LATE}
    assert (counters.accepted, counters.duplicates, counters.bad) == (1, 1, 1)

    run_store = ClickHouseProjectionStore.embedded(tmp_path / "run")
    run_store.create_schema()
    try:
        for lines, name in ((FIRST, "first.jsonl"), (LATE, "late.jsonl")):
            (tmp_path / name).write_bytes(b"\n".join(lines))
            stats = run_file(model, run_store, str(tmp_path / name), not_after_ms=None)
        assert (stats.accepted, stats.duplicates, stats.bad) == (1, 1, 1)
        assert [row[2] for row in run_store.query(BAD_SQL)[1]] == ["too_late"]
    finally:
        run_store.close()
