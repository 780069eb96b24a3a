"""Run one JSONL source through the engine into a store, and the end-of-run summary."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from events.errors import TouchpathError
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.native_engine import NativeEngine
from streams.alerting.detection import EmbeddedAlerting
from streams.common.engines import DEFAULT_ENGINE, EngineKind, journey_engine
from streams.common.progress import Progress
from streams.embedded.runner import EmbeddedRunner, RunStats, numbered_lines, restore_state
from streams.embedded.upgrade import keep_unkept_states
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.summary import render_table, summarise


def _read_lines(source: str) -> Iterator[tuple[int, bytes]]:
    if source == "-":
        yield from numbered_lines(sys.stdin.buffer)
        return
    try:
        with Path(source).open("rb") as handle:
            yield from numbered_lines(handle)
    except OSError as error:
        msg = f"cannot read input {source}: {error.strerror}"
        raise TouchpathError(msg) from error


def run_file(
    model: JourneyModel,
    store: ClickHouseProjectionStore,
    source: str,
    scenario: str = "live",
    alerting: EmbeddedAlerting | None = None,
    *,
    not_after_ms: int | None = None,
    engine_kind: EngineKind = DEFAULT_ENGINE,
) -> RunStats:
    """Run one JSONL source through the engine into the store, with progress on stderr.

    Either engine keeps customers' journey states in the store and continues those earlier runs
    kept, whichever engine kept them (one state format).
    """
    engine = journey_engine(model, scenario, engine_kind)
    continue_journeys(engine, store)
    runner = EmbeddedRunner(
        engine, store, alerting=alerting, keep_state=True, not_after_ms=not_after_ms, overlap_writes=True
    )
    progress = Progress(f"events from {source}")
    stats = runner.feed(_read_lines(source), source, progress.update)
    progress.done(stats.lines + stats.blank)
    return stats


def continue_journeys(engine: JourneyEngine | NativeEngine, store: ClickHouseProjectionStore) -> int:
    """Load the journey states earlier runs kept (`run` and `serve` alike), after keeping once those
    a data dir from before `serve` kept states lacks; says so on stderr; returns the customers."""
    rebuilt = keep_unkept_states(engine.model, store, engine.scenario)
    if rebuilt:
        print(
            f"kept the journey states of {rebuilt:,} stored events that had none (a data dir from "
            "before serve kept states; done once)",
            file=sys.stderr,
        )
    restored = restore_state(engine, store)
    if restored:
        print(f"continuing {restored:,} customers' journeys kept by earlier runs", file=sys.stderr)
    return restored


def print_summary(store: ClickHouseProjectionStore, stats: RunStats, scenario: str = "live") -> None:
    """The end-of-run summary on stdout."""
    blank = f" + blank {stats.blank:,} (skipped)" if stats.blank else ""
    print(
        f"\nlines read {stats.lines + stats.blank:,} = accepted {stats.accepted:,} "
        f"(of which {stats.duplicates:,} duplicates) + bad {stats.bad:,}{blank}"
    )
    for section in summarise(store, scenario):
        if section.rows:
            print(f"\n{section.title}\n{render_table(section.columns, section.rows)}")
