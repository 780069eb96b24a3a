"""The embedded runner: lines in, the pure engine in the middle, projections in chDB or a server."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from events.errors import Rejection
from events.model import TouchpointEvent
from projections import schema
from projections.customer import CustomerState
from projections.engine import JourneyEngine, RowBatch
from projections.intake import Intake, Kind, Verdict
from projections.native_engine import NativeEngine
from projections.rows import Row
from projections.state_codec import decode_state, encode_state
from streams.alerting.detection import EmbeddedAlerting
from streams.store.columns import ColumnBatch
from streams.store.protocol import ProjectionStore
from streams.store.writer import BackgroundWriter

DRAIN_EVERY = 25_000


@dataclass(slots=True)
class RunStats:
    """Counts of one run: lines = accepted + bad; duplicates are accepted and change nothing.

    `lines` counts the non-blank lines; blank (or whitespace-only) lines are skipped and counted in
    `blank`, so a file's line count is lines + blank.
    """

    lines: int = 0
    blank: int = 0
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0
    rows_written: int = 0


class EmbeddedRunner:
    """Feeds records through the intake path (contract checks, engine), quarantines bad ones, writes rows.

    `run` feeds lines (feed); `serve` takes events its HTTP layer checked (take, refuse, settle) and
    writes group commits (collect, write). Both settle too-late events and keep states alike.
    """

    def __init__(
        self,
        engine: JourneyEngine | NativeEngine,
        store: ProjectionStore | None,
        drain_every: int = DRAIN_EVERY,
        alerting: EmbeddedAlerting | None = None,
        keep_state: bool = False,
        *,
        not_after_ms: int | None = None,
        arrow: bool = True,
        overlap_writes: bool = False,
    ) -> None:
        self.engine = engine
        # The native engine's rows go to the store as Arrow columns (no Python object per row);
        # arrow=False drains them as tuples, as the Python engine's.
        self.arrow = arrow and isinstance(engine, NativeEngine)
        # Events later than not_after_ms (the caller's wall clock plus its bound) are future_timestamp;
        # too-late events are settled against the store (already stored: duplicates, not bad).
        self.intake = Intake(engine, not_after_ms=not_after_ms, defer_too_late=store is not None)
        self.store = store
        self.drain_every = drain_every
        self.alerting = alerting  # friction spike detection on each drained batch (optional)
        # Write customer states beside the projections so the next run continues the journeys.
        self.keep_state = keep_state and store is not None
        # feed() writes on a writer thread while it folds the next lines (`run`); serve writes itself.
        self.overlap_writes = overlap_writes and store is not None
        self._writer: BackgroundWriter | None = None
        self.stats = RunStats()
        self._bad: list[Row] = []
        self._late: list[Verdict] = []

    def feed(
        self,
        lines: Iterable[tuple[int, bytes]],
        source: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> RunStats:
        """Process (position, raw line) pairs from one source; blank lines are counted and skipped."""
        stats = self.stats
        if self.overlap_writes and self.store is not None:
            self._writer = BackgroundWriter(self.store)
        try:
            self._feed(lines, source, on_progress)
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                stats.rows_written += writer.close()
        counters = self.engine.counters
        stats.accepted, stats.duplicates, stats.bad = counters.accepted, counters.duplicates, counters.bad
        return stats

    def _feed(
        self, lines: Iterable[tuple[int, bytes]], source: str, on_progress: Callable[[int], None] | None
    ) -> None:
        stats = self.stats
        chunk: list[tuple[int, bytes]] = []
        for position, raw in lines:
            line = raw.strip()
            if not line:
                stats.blank += 1
                continue
            stats.lines += 1
            chunk.append((position, line))
            if len(chunk) >= self.drain_every:
                self._offer(chunk, source)
                chunk = []
                self.flush()
                if on_progress is not None:
                    on_progress(stats.lines)
        self._offer(chunk, source)
        self.flush()

    def _offer(self, chunk: list[tuple[int, bytes]], source: str) -> None:
        # One batch per drain: the native engine decodes and folds it without Python per event.
        for verdict in self.intake.offer_batch(chunk, source):
            if verdict.quarantine is None:
                continue
            if verdict.kind is Kind.LATE:
                # Maybe an event of a journey an earlier run already settled: decided at flush.
                self._late.append(verdict)
            else:
                self._bad.append(verdict.quarantine)

    def take(self, event: TouchpointEvent, raw: bytes, source: str, position: int) -> Verdict:
        """Fold one event that already passed the contract's checks (an HTTP body is checked as it is
        split); a rejection's bad_events row is written at the next flush, a LATE verdict is the
        caller's to settle()."""
        verdict = self.intake.take(event, raw, source, position)
        if verdict.quarantine is not None and verdict.kind is not Kind.LATE:
            self._bad.append(verdict.quarantine)
        return verdict

    def refuse(self, raw: bytes, source: str, position: int, rejection: Rejection) -> Verdict:
        """Quarantine a record refused before the engine; its row is written at the next flush."""
        verdict = self.intake.refuse(raw, source, position, rejection)
        if verdict.quarantine is not None:
            self._bad.append(verdict.quarantine)
        return verdict

    def settle(self, late: Sequence[Verdict]) -> list[Verdict]:
        """Settle LATE verdicts against the store (see settle_late), in order; the rows of those
        refused as too_late are written at the next flush."""
        settled = settle_late(self.intake, self.store, late)
        self._bad.extend(verdict.quarantine for verdict in settled if verdict.quarantine is not None)
        return settled

    def flush(self) -> RowBatch | ColumnBatch:
        """Write everything collect() gathers; returns the batch written."""
        batch = self.collect()
        self.write(batch)
        return batch

    def collect(self) -> RowBatch | ColumnBatch:
        """Drain the engine into one batch: its rows, the quarantined records and, when the runner
        keeps state in the store, the changed customers' journey states (nothing is written).
        The native engine's rows come as Arrow columns (a ColumnBatch) unless arrow=False."""
        engine = self.engine
        batch: RowBatch | ColumnBatch
        if isinstance(engine, NativeEngine) and self.arrow:
            if self.keep_state:
                tables, states = engine.drain_kept_columns()
                batch = ColumnBatch.of_native(tables)
                batch.add_states(engine.scenario, states)
            else:
                batch = ColumnBatch.of_native(engine.drain_columns())
        elif isinstance(engine, NativeEngine):
            if self.keep_state:
                batch, states = engine.drain_kept()
                for customer_id, raw, revision in states:
                    batch.add(schema.JOURNEY_STATE, (engine.scenario, customer_id, raw, revision, 0))
            else:
                batch = engine.drain()
        else:
            batch = RowBatch()
            for update in engine.drain_updates():
                batch.extend(update.rows)
                if self.keep_state:
                    batch.add(*state_row(engine.scenario, update.state))
        # Engine state is long-lived and acyclic: keep the cyclic GC from rescanning it on every
        # allocation burst (it otherwise costs more than the journey engine itself).
        gc.freeze()
        if self._late:
            if self._writer is not None:
                self._writer.wait()  # settling reads the store: what this run folded is in it
            self.settle(self._late)
            self._late = []
        for row in self._bad:
            batch.add(schema.BAD_EVENTS, row)
        self._bad = []
        if self.alerting is not None:
            self.alerting.process(batch, self.engine.watermark)
        return batch

    def write(self, batch: RowBatch | ColumnBatch) -> None:
        """Write a collected batch to the store (none: nothing to do); inside feed() with
        overlap_writes, hand it to the writer thread."""
        if self._writer is not None:
            self._writer.submit(batch)
        elif self.store is not None:
            self.stats.rows_written += self.store.write(batch)


def settle_late(intake: Intake, store: ProjectionStore | None, late: Sequence[Verdict]) -> list[Verdict]:
    """Settle too-late verdicts against the store, in order: stored events are duplicates (a re-sent
    event of a journey an earlier run settled), the others are rejected with their quarantine row."""
    event_ids = [verdict.event.event_id for verdict in late if verdict.event is not None]
    stored = store.stored_event_ids(intake.engine.scenario, event_ids) if store is not None else set()
    return [
        intake.settle_late(verdict, stored=verdict.event is not None and verdict.event.event_id in stored)
        for verdict in late
    ]


def state_row(scenario: str, state: CustomerState) -> tuple[schema.Table, Row]:
    """The journey_state row that keeps a customer's state (its revision is the row version)."""
    return schema.JOURNEY_STATE, (scenario, state.customer_id, encode_state(state), state.revision, 0)


def restore_state(engine: JourneyEngine | NativeEngine, store: ProjectionStore) -> int:
    """Load the journey states an earlier run kept for the engine's scenario; returns how many.

    Later input then continues those journeys (same instance ids, higher row versions) instead of
    starting them again, and re-sent events are recognised as duplicates. Both engines read the
    states either kept (one format, projections.state_codec).
    """
    states = store.journey_states(engine.scenario)
    if isinstance(engine, NativeEngine):
        return engine.restore(states)
    for raw in states:
        state = decode_state(raw, engine.model)
        engine.customers[state.customer_id] = state
        engine.schedule(state)
    return len(states)


def numbered_lines(stream: Iterable[bytes]) -> Iterable[tuple[int, bytes]]:
    """(1-based line number, line) pairs."""
    return enumerate(stream, start=1)
