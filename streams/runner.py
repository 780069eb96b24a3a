"""The embedded runner: lines in, the pure engine in the middle, projections in chDB or a server."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from events.codec import check_event
from events.errors import Rejection
from projections import schema
from projections.engine import JourneyEngine, RowBatch
from streams.store import ClickHouseProjectionStore

DRAIN_EVERY = 25_000


@dataclass(slots=True)
class RunStats:
    """Counts of one run: lines read = accepted + bad; duplicates are accepted and change nothing."""

    lines: int = 0
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
    ) -> None:
        self.engine = engine
        self.store = store
        self.drain_every = drain_every
        self.stats = RunStats()
        self._bad: list[tuple[object, ...]] = []

    def feed(
        self,
        lines: Iterable[tuple[int, bytes]],
        source: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> RunStats:
        """Process (position, raw line) pairs from one source; empty lines are skipped."""
        engine, stats = self.engine, self.stats
        since_drain = 0
        for position, raw in lines:
            line = raw.strip()
            if not line:
                continue
            stats.lines += 1
            decoded = check_event(line)
            if isinstance(decoded, Rejection):
                engine.count_bad()
                self._quarantine(source, position, decoded, line)
            else:
                rejection = engine.accept(decoded)
                if rejection is not None:
                    self._quarantine(source, position, rejection, line)
            since_drain += 1
            if since_drain >= self.drain_every:
                since_drain = 0
                self.flush()
                if on_progress is not None:
                    on_progress(stats.lines)
        self.flush()
        stats.accepted = engine.counters.accepted
        stats.duplicates = engine.counters.duplicates
        stats.bad = engine.counters.bad
        return stats

    def flush(self) -> RowBatch:
        """Drain the engine and write its rows and the quarantined lines."""
        batch = self.engine.drain()
        # Engine state is long-lived and acyclic: keep the cyclic GC from rescanning it on every
        # allocation burst (it otherwise costs more than the journey engine itself).
        gc.freeze()
        for row in self._bad:
            batch.add(schema.BAD_EVENTS, row)
        self._bad = []
        if self.store is not None:
            self.stats.rows_written += self.store.write(batch)
        return batch

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


def numbered_lines(stream: Iterable[bytes]) -> Iterable[tuple[int, bytes]]:
    """(1-based line number, line) pairs."""
    return enumerate(stream, start=1)
