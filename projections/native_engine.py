"""NativeEngine: the journey engine's fold and rendering in Rust, with JourneyEngine's interface and rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from events.errors import BadReason, Rejection
from events.model import TouchpointEvent
from projections.engine import EngineCounters, RowBatch
from projections.journeys import Journey, JourneyModel
from projections.native import native_module
from projections.occurrence import Occurrence
from projections.rows import Row

ACCEPTED, DUPLICATE, TOO_LATE = 0, 1, 2  # what the native accept() returns
REFUSED, FALLBACK = 0, 1  # the exceptions of the native feed_raw()
TOO_LATE_REFUSED, MISPLACED = 2, 3  # and of feed_partition()
TOO_LATE_DETAIL = "older than the allowed lateness; this customer's journey there is already final"


def _journey_tables(journey: Journey) -> tuple[Any, ...]:
    """A compiled journey as the native core takes it (projections.journeys.compile_journey's tables)."""
    steps = [
        (step.name, sorted(step.touchpoints), step.primary, step.primary_channel,
         step.optional, step.repeatable, step.within_ms, step.goal)
        for step in journey.steps
    ]  # fmt: skip
    return (
        journey.id,
        journey.version,
        journey.abandon_after_ms,
        steps,
        {touchpoint: list(indexes) for touchpoint, indexes in journey.step_of.items()},
        list(journey.skip_cost),
        list(journey.initial_costs),
        sorted(journey.entry_touchpoints),
        sorted(journey.goal_touchpoints),
        sorted(journey.final_touchpoints),
        journey.shortest_ideal_length,
    )


def _batch(tables: dict[str, list[Row]], batch: RowBatch | None = None) -> RowBatch:
    batch = RowBatch() if batch is None else batch
    for name, rows in tables.items():
        batch.rows[name].extend(rows)
    return batch


@dataclass(frozen=True, slots=True)
class NativeUpdate:
    """What one drain produced for one customer: its rows and its state after them, as the bytes
    projections.state_codec.encode_state writes for the same state (either engine reads them)."""

    customer_id: str
    rows: RowBatch
    state: bytes
    revision: int  # the state's revision: the version of its journey_state row


class NativeEngine:
    """JourneyEngine's behaviour with the fold, alignment, signals and rows computed in Rust.

    The Python side keeps the registry check (so rejections read the same) and the counters;
    customer states live in the native core and cross into Python only as state_codec bytes
    (drain_updates hands them out, restore takes them back).
    """

    def __init__(self, model: JourneyModel, scenario: str = "live") -> None:
        self.model = model
        self.scenario = scenario
        self.counters = EngineCounters()
        index = {id(journey): n for n, journey in enumerate(model.journeys)}
        friction = model.settings.friction
        self._inner = native_module().Engine(
            scenario,
            [_journey_tables(journey) for journey in model.journeys],
            {persona: [index[id(j)] for j in journeys] for persona, journeys in model.by_persona.items()},
            model.default_persona,
            dict(model.channel_of),
            dict(model.owner_of),
            model.settings.allowed_lateness,
            (friction.repeat_window, friction.escalation_lookback, friction.survey_lookback),
        )
        self._channel_of = model.channel_of
        self._personas = model.by_persona

    @property
    def watermark(self) -> int:
        """The latest event time seen or the watermark advanced to."""
        return int(self._inner.watermark)

    def check(self, event: TouchpointEvent) -> Rejection | None:
        """Definitions verdict for an event (unknown touchpoint or persona, wrong channel), unfolded."""
        return self.model.check(event)

    def accept(self, event: TouchpointEvent, stream_time: int | None = None) -> Rejection | None:
        """JourneyEngine.accept: fold one decoded event, or return why it goes to quarantine."""
        counters = self.counters
        counters.received += 1
        persona = event.persona
        if self._channel_of.get(event.touchpoint) != event.channel or (
            persona is not None and persona not in self._personas
        ):
            rejection = self.model.check(event)
            if rejection is not None:
                counters.bad += 1
                return rejection
        survey = event.survey
        outcome = event.outcome
        placement = self._inner.accept(
            event.occurred_ms, event.event_id, event.customer_id, event.touchpoint, event.channel,
            outcome.value if outcome is not None else None, persona, event.employee_id,
            survey.kind.value if survey is not None else None,
            survey.score if survey is not None else None,
            survey.comment if survey is not None else None,
            orjson.dumps(event.attributes).decode() if event.attributes else "{}",
            event.source, stream_time,
        )  # fmt: skip
        if placement == TOO_LATE:
            counters.bad += 1
            return Rejection(BadReason.TOO_LATE, TOO_LATE_DETAIL, "occurred_at")
        counters.accepted += 1
        if placement == DUPLICATE:
            counters.duplicates += 1
        return None

    def feed_raw(
        self, lines: list[bytes], not_after_ms: int | None, max_depth: int
    ) -> list[tuple[int, int, tuple[str, str, str | None] | None]]:
        """Decode, check and fold raw records natively (one stream, no partitions).

        Returns the exceptions in order: (index, REFUSED, (reason, detail, field)) for a record the
        contract refuses, already counted as bad; (index, FALLBACK, None) for one that must go
        through Intake.offer (a registry, persona, future, depth or lateness refusal), not counted.
        """
        exceptions, (received, accepted, duplicates, bad) = self._inner.feed_raw(
            lines, not_after_ms, max_depth
        )
        counters = self.counters
        counters.received += received
        counters.accepted += accepted
        counters.duplicates += duplicates
        counters.bad += bad
        return exceptions  # type: ignore[no-any-return]

    def feed_partition(
        self,
        lines: list[bytes],
        partition: int,
        *,
        partitions: int | None,
        stream_time: int | None,
        not_after_ms: int | None,
        max_depth: int,
    ) -> tuple[list[tuple[int, int, Any, Any]], list[str], int | None]:
        """Decode, check and fold consecutive raw records of one input partition natively, as
        Intake.offer(raw, source, offset, partition) would one by one from the partition's stream
        time `stream_time`; with `partitions`, records whose customer hashes (murmur2) to another
        partition are not folded.

        Returns (exceptions, the customer of each folded record, the stream time after the run).
        Exceptions, in order: (index, REFUSED, (reason, detail, field), None) for a record the
        contract refuses, not counted (its customer may live elsewhere); (index, FALLBACK, None,
        None) for one that must go through Intake.offer, not counted; (index, TOO_LATE_REFUSED,
        None, None), counted as bad; (index, MISPLACED, None, (customer, home partition)).
        """
        exceptions, (received, accepted, duplicates, bad), customers, after = native_module().feed_partition(
            self._inner, lines, partition, partitions, stream_time, not_after_ms, max_depth
        )
        counters = self.counters
        counters.received += received
        counters.accepted += accepted
        counters.duplicates += duplicates
        counters.bad += bad
        return exceptions, customers, after

    def count_bad(self) -> None:
        """Count a record rejected before it reached the engine (undecodable, schema)."""
        self.counters.received += 1
        self.counters.bad += 1

    def replay_customer(
        self, customer_id: str, occurrences: Iterable[Occurrence], batch: RowBatch | None = None
    ) -> RowBatch:
        """JourneyEngine.replay_customer: fold one customer's history and render it (into batch)."""
        events = list(occurrences)
        tables, duplicates = self._inner.replay_customer(customer_id, events)
        self.counters.received += len(events)
        self.counters.accepted += len(events)
        self.counters.duplicates += duplicates
        return _batch(tables, batch)

    def replay_columns(
        self, customers: list[tuple[str, list[Occurrence]]]
    ) -> dict[str, tuple[int, list[tuple[object, ...]]]]:
        """replay_customer for each (customer, occurrences in order), rendered as drain_columns
        renders: per table with rows, (row count, column buffers); no object per row."""
        tables, duplicates = self._inner.replay_columns(customers)
        events = sum(len(occurrences) for _, occurrences in customers)
        self.counters.received += events
        self.counters.accepted += events
        self.counters.duplicates += duplicates
        return tables  # type: ignore[no-any-return]

    def mark_partitioned(self) -> None:
        """JourneyEngine.mark_partitioned: lateness per customer's own input partition from now on."""
        native_module().mark_partitioned(self._inner)

    def advance(self, watermark: int) -> None:
        """Move time forward: close instances idle for longer than their abandon_after."""
        self._inner.advance(watermark)

    def drain(self) -> RowBatch:
        """Rows for every event accepted and every instance changed since the last drain."""
        return _batch(self._inner.drain())

    def drain_columns(self) -> dict[str, tuple[int, list[tuple[object, ...]]]]:
        """drain() as column buffers in Arrow's layout, per table with rows: (row count, columns in
        the table's order, each (type, validity bitmap or None, buffers...)); no object per row."""
        return self._inner.drain_columns()  # type: ignore[no-any-return]

    def drain_rows(self) -> list[tuple[str, RowBatch]]:
        """Per customer changed since the last drain: its id and its new rows (drain_updates
        without the states, which stay in the native core)."""
        return [(customer, _batch(tables)) for customer, tables in self._inner.drain_updates()]

    def drain_updates(self) -> list[NativeUpdate]:
        """Per customer changed since the last drain: its new rows and its encoded state after them
        (JourneyEngine.drain_updates with the state as state_codec bytes)."""
        return [
            NativeUpdate(customer, _batch(tables), raw, revision)
            for customer, tables, raw, revision in self._inner.drain_states()
        ]

    def drain_kept(self) -> tuple[RowBatch, list[tuple[str, bytes, int]]]:
        """drain() and the changed customers' (id, state_codec bytes, revision), without a batch
        per customer (what a runner that keeps states writes)."""
        tables, states = self._inner.drain_kept()
        return _batch(tables), states

    def drain_kept_columns(
        self,
    ) -> tuple[dict[str, tuple[int, list[tuple[object, ...]]]], list[tuple[str, bytes, int]]]:
        """drain_kept with the rows as drain_columns renders them (no object per row) and the
        changed customers' (id, state_codec bytes, revision)."""
        tables, states = native_module().drain_kept_columns(self._inner)
        return tables, states

    def restore(self, raws: Iterable[bytes]) -> int:
        """Take over customers' kept states (state_codec bytes, from either engine), scheduling their
        open instances to time out; returns how many. ValueError, restoring none, on bytes that are
        not a state or name a journey this model lacks."""
        return int(self._inner.restore(list(raws)))

    def state_bytes(self, customer_id: str) -> bytes | None:
        """The customer's state as state_codec bytes, if the engine holds one."""
        return self._inner.state_of(customer_id)  # type: ignore[no-any-return]

    def forget(self, customer_id: str) -> bool:
        """JourneyEngine.forget: drop a customer's state, pending changes and timeouts (erasure)."""
        return bool(native_module().forget(self._inner, customer_id))

    def forget_cached(self) -> None:
        """Drop pending deadlines, changes and event rows."""
        self._inner.forget_cached()

    def open_instances(self) -> int:
        """How many journey instances are open now."""
        return int(self._inner.open_instances())

    def open_state_bytes(self) -> tuple[int, int]:
        """(customers with an open journey, total bytes of their encoded states)."""
        customers, size = self._inner.open_state_bytes()
        return int(customers), int(size)

    def resident_state_bytes(self, *, open_only: bool = False) -> int:
        """Bytes the customer states hold in native memory, counted from the allocations' sizes
        (open_only: of the customers with an open journey alone)."""
        return int(self._inner.resident_state_bytes(open_only))

    def customer_count(self) -> int:
        """How many customers the engine holds state for."""
        return int(self._inner.customers())
