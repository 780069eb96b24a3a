"""The one intake path: a raw record in, a verdict out (accepted, duplicate, or a quarantined rejection)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from events.codec import check_contract
from events.errors import BadReason, Rejection
from events.model import MAX_EVENT_DEPTH, TouchpointEvent
from projections.engine import EngineCounters
from projections.native_engine import REFUSED, NativeEngine
from projections.rows import Row


class Kind(StrEnum):
    """What became of one record."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # accepted, changed nothing (its event_id was known)
    REJECTED = "rejected"  # quarantined: `quarantine` holds its bad_events row
    # Too late for its journey, which may be settled in storage already: the shell asks the store
    # whether the event is there and calls Intake.settle_late (see Intake.defer_too_late).
    LATE = "late"


class FoldingEngine(Protocol):
    """What the intake needs of an engine: JourneyEngine, or NativeEngine with the same behaviour."""

    scenario: str
    counters: EngineCounters

    def accept(self, event: TouchpointEvent, stream_time: int | None = None) -> Rejection | None:
        """Fold one decoded event; the rejection if it must go to quarantine instead."""

    def count_bad(self) -> None:
        """Count a record rejected before it reached the engine."""


class Verdict(NamedTuple):
    """The verdict on one record (a tuple: the hot path makes one per event)."""

    kind: Kind
    event: TouchpointEvent | None = None
    rejection: Rejection | None = None
    quarantine: Row | None = None


def quarantine_row(scenario: str, source: str, position: int, rejection: Rejection, raw: bytes | str) -> Row:
    """The bad_events row of a refused record, in the table's column order: the only place it is built."""
    return (scenario, source, position, rejection.reason.value, rejection.field, rejection.detail, raw)


class Intake:
    """Checks raw records against the contract and folds the valid ones into the engine.

    Pure: the shell passes the wall-clock bound (`not_after_ms`: later events are future_timestamp)
    and, for partitioned input (Kafka), each record's partition; the stream time of every partition
    (its latest event time) is kept here, so a customer's lateness is measured against its own
    partition's progress, not against faster partitions. Without a partition the engine's single
    watermark is the stream time.
    """

    def __init__(
        self,
        engine: FoldingEngine,
        *,
        not_after_ms: int | None = None,
        max_depth: int = MAX_EVENT_DEPTH,
        defer_too_late: bool = False,
        raw_as_text: bool = False,
    ) -> None:
        self.engine = engine
        self.not_after_ms = not_after_ms
        self.max_depth = max_depth
        # A shell with a store passes True: too-late events come back as Kind.LATE to be settled.
        self.defer_too_late = defer_too_late
        # Store raw as text (invalid UTF-8 replaced): for row writers that need valid strings (Arrow).
        self.raw_as_text = raw_as_text
        self.stream_time: dict[int, int] = {}  # partition -> latest event time seen on it

    def offer(self, raw: bytes, source: str, position: int, partition: int | None = None) -> Verdict:
        """Decode and check one record, then fold it: the verdict says what became of it."""
        checked = check_contract(raw, not_after_ms=self.not_after_ms, max_depth=self.max_depth)
        if isinstance(checked, Rejection):
            return self.refuse(raw, source, position, checked)
        return self.take(checked, raw, source, position, partition)

    def offer_batch(self, records: Sequence[tuple[int, bytes]], source: str) -> list[Verdict]:
        """offer() for each (position, raw) record of one unpartitioned source, in order; returns
        only the verdicts that carry a quarantine row (rejected, or late). A NativeEngine decodes,
        checks and folds the batch natively and hands back only the records it refused."""
        engine = self.engine
        if not isinstance(engine, NativeEngine):
            verdicts = (self.offer(raw, source, position) for position, raw in records)
            return [verdict for verdict in verdicts if verdict.quarantine is not None]
        out = []
        # Every exception is a refusal that changes no journey, so handling them after the batch
        # gives the verdicts, rows and counters of offering record by record.
        for index, code, refusal in engine.feed_raw(
            [raw for _, raw in records], self.not_after_ms, self.max_depth
        ):
            position, raw = records[index]
            if code == REFUSED and refusal is not None:
                reason, detail, field = refusal
                rejection = Rejection(BadReason(reason), detail, field)
                out.append(
                    Verdict(Kind.REJECTED, None, rejection, self._row(source, position, rejection, raw))
                )
                continue
            verdict = self.offer(raw, source, position)
            if verdict.quarantine is not None:
                out.append(verdict)
        return out

    def refuse(self, raw: bytes, source: str, position: int, rejection: Rejection) -> Verdict:
        """A record refused before it reached the engine (e.g. by an HTTP body's own checks)."""
        self.engine.count_bad()
        return Verdict(Kind.REJECTED, None, rejection, self._row(source, position, rejection, raw))

    def take(
        self, event: TouchpointEvent, raw: bytes, source: str, position: int, partition: int | None = None
    ) -> Verdict:
        """Fold one event that passed the contract's checks (the engine checks registry and persona)."""
        engine = self.engine
        stream_time = None
        if partition is not None:
            occurred = event.occurred_ms
            known = self.stream_time.get(partition, occurred)
            stream_time = self.stream_time[partition] = known if known > occurred else occurred
        duplicates = engine.counters.duplicates
        rejection = engine.accept(event, stream_time)
        if rejection is None:
            return Verdict(
                Kind.DUPLICATE if engine.counters.duplicates != duplicates else Kind.ACCEPTED, event
            )
        kind = Kind.LATE if self.defer_too_late and rejection.reason is BadReason.TOO_LATE else Kind.REJECTED
        return Verdict(kind, event, rejection, self._row(source, position, rejection, raw))

    def settle_late(self, verdict: Verdict, *, stored: bool) -> Verdict:
        """A LATE verdict once the shell knows whether its event is stored: a duplicate if so
        (a re-sent event of a journey an earlier run settled), else rejected as too late."""
        if not stored:
            return verdict._replace(kind=Kind.REJECTED)
        counters = self.engine.counters
        counters.bad -= 1  # counted as bad by accept(); it is an accepted duplicate after all
        counters.accepted += 1
        counters.duplicates += 1
        return Verdict(Kind.DUPLICATE, verdict.event)

    def recover(self, partition: int, stream_time: int) -> None:
        """Raise a partition's stream time to a recovered state's (after a restart or rebalance)."""
        self.stream_time[partition] = max(self.stream_time.get(partition, stream_time), stream_time)

    def rejected(self, raw: bytes, source: str, position: int, rejection: Rejection) -> Verdict:
        """The verdict on a record the engine already refused and counted (a batch feed's)."""
        return Verdict(Kind.REJECTED, None, rejection, self._row(source, position, rejection, raw))

    def _row(self, source: str, position: int, rejection: Rejection, raw: bytes) -> Row:
        text = raw.decode("utf-8", "replace") if self.raw_as_text else raw
        return quarantine_row(self.engine.scenario, source, position, rejection, text)
