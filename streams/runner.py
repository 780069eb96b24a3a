"""The embedded runner: lines in, the pure engine in the middle, projections in chDB or a server."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from events.codec import check_event, check_not_future
from events.errors import BadReason, Rejection
from projections import schema
from projections.engine import JourneyEngine, RowBatch
from projections.state_codec import decode_state, encode_state
from streams.alerting import EmbeddedAlerting
from streams.store import ClickHouseProjectionStore

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
    """Feeds lines through decode -> registry check -> engine, quarantines bad ones, writes rows."""

    def __init__(
        self,
        engine: JourneyEngine,
        store: ClickHouseProjectionStore | None,
        drain_every: int = DRAIN_EVERY,
        alerting: EmbeddedAlerting | None = None,
        keep_state: bool = False,
        *,
        not_after_ms: int | None = None,
    ) -> None:
        self.engine = engine
        # Events later than this (the caller's wall clock plus its bound) are future_timestamp.
        self.not_after_ms = not_after_ms
        self.store = store
        self.drain_every = drain_every
        self.alerting = alerting  # friction spike detection on each drained batch (optional)
        # Write customer states beside the projections so the next run continues the journeys.
        self.keep_state = keep_state and store is not None
        self.stats = RunStats()
        self._bad: list[tuple[object, ...]] = []
        self._too_late: list[tuple[str, int, Rejection, bytes, str]] = []
        self._known_late = 0  # "too late" events that were already stored: duplicates, not bad

    def feed(
        self,
        lines: Iterable[tuple[int, bytes]],
        source: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> RunStats:
        """Process (position, raw line) pairs from one source; blank lines are counted and skipped."""
        engine, stats = self.engine, self.stats
        since_drain = 0
        for position, raw in lines:
            line = raw.strip()
            if not line:
                stats.blank += 1
                continue
            stats.lines += 1
            decoded = check_event(line)
            if not isinstance(decoded, Rejection) and self.not_after_ms is not None:
                decoded = check_not_future(decoded, self.not_after_ms) or decoded
            if isinstance(decoded, Rejection):
                engine.count_bad()
                self._quarantine(source, position, decoded, line)
            else:
                rejection = engine.accept(decoded)
                if (
                    rejection is not None
                    and rejection.reason is BadReason.TOO_LATE
                    and self.store is not None
                ):
                    # Maybe an event of a journey an earlier run already settled: decided at flush.
                    self._too_late.append((source, position, rejection, line, decoded.event_id))
                elif rejection is not None:
                    self._quarantine(source, position, rejection, line)
            since_drain += 1
            if since_drain >= self.drain_every:
                since_drain = 0
                self.flush()
                if on_progress is not None:
                    on_progress(stats.lines)
        self.flush()
        stats.accepted = engine.counters.accepted + self._known_late
        stats.duplicates = engine.counters.duplicates + self._known_late
        stats.bad = engine.counters.bad - self._known_late
        return stats

    def flush(self) -> RowBatch:
        """Drain the engine and write its rows, the quarantined lines and, when the runner keeps
        state in the store, the changed customers' journey states."""
        batch = RowBatch()
        for update in self.engine.drain_updates():
            batch.extend(update.rows)
            if self.keep_state:
                state = update.state
                batch.add(
                    schema.JOURNEY_STATE,
                    (self.engine.scenario, state.customer_id, encode_state(state), state.revision, 0),
                )
        # Engine state is long-lived and acyclic: keep the cyclic GC from rescanning it on every
        # allocation burst (it otherwise costs more than the journey engine itself).
        gc.freeze()
        self._settle_too_late()
        for row in self._bad:
            batch.add(schema.BAD_EVENTS, row)
        self._bad = []
        if self.alerting is not None:
            self.alerting.process(batch, self.engine.watermark)
        if self.store is not None:
            self.stats.rows_written += self.store.write(batch)
        return batch

    def _settle_too_late(self) -> None:
        """Events older than the allowed lateness are duplicates when already stored, else bad."""
        if not self._too_late or self.store is None:
            return
        ids = sorted({item[4] for item in self._too_late})
        _, rows = self.store.query(
            "SELECT event_id FROM touchpoint_events WHERE scenario = {scenario:String} "
            "AND event_id IN {ids:Array(String)}",
            {"scenario": self.engine.scenario, "ids": ids},
        )
        stored = {row[0] for row in rows}
        for source, position, rejection, line, event_id in self._too_late:
            if event_id in stored:
                self._known_late += 1
            else:
                self._quarantine(source, position, rejection, line)
        self._too_late = []

    def _quarantine(self, source: str, position: int, rejection: Rejection, raw: bytes) -> None:
        self._bad.append(
            (
                self.engine.scenario,
                source,
                position,
                rejection.reason.value,
                rejection.field,
                rejection.detail,
                raw,
            )
        )


def restore_state(engine: JourneyEngine, store: ClickHouseProjectionStore) -> int:
    """Load the journey states an earlier run kept for the engine's scenario; returns how many.

    Later input then continues those journeys (same instance ids, higher row versions) instead of
    starting them again, and re-sent events are recognised as duplicates.
    """
    _, rows = store.query(
        "SELECT state FROM journey_state FINAL WHERE scenario = {scenario:String}",
        {"scenario": engine.scenario},
    )
    for (raw,) in rows:
        state = decode_state(raw.encode() if isinstance(raw, str) else raw, engine.model)
        engine.customers[state.customer_id] = state
        engine.schedule(state)
    return len(rows)


def numbered_lines(stream: Iterable[bytes]) -> Iterable[tuple[int, bytes]]:
    """(1-based line number, line) pairs."""
    return enumerate(stream, start=1)
