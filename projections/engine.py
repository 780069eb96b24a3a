"""The journey engine: folds accepted events into customer state and renders projection rows."""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

import orjson

from events.errors import BadReason, Rejection
from events.model import TouchpointEvent
from projections import schema
from projections.alignment import Deviation, DeviationKind, align, deviations_of
from projections.customer import (
    CustomerState,
    Instance,
    Placement,
    Status,
    add_event,
    expire,
    forget_settled,
)
from projections.durations import format_duration
from projections.journeys import JourneyModel
from projections.occurrence import Occurrence, occurrence_of
from projections.rows import (
    Row,
    delight_signal_row,
    deviation_row,
    friction_signal_row,
    journey_instance_row,
    support_attribution_row,
    touchpoint_event_row,
)
from projections.signals import attribute_support, delight_of, friction_of

DEVIATING_KINDS = frozenset(
    {
        DeviationKind.UNEXPECTED_STEP,
        DeviationKind.OUT_OF_ORDER,
        DeviationKind.REPEATED_STEP,
        DeviationKind.TIME_BUDGET_EXCEEDED,
    }
)


@dataclass(slots=True)
class RowBatch:
    """Rows for each projection table, in the tables' column order."""

    # Created on first use: most per-customer batches touch two or three of the tables.
    rows: defaultdict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: schema.Table, row: Row) -> None:
        """Append one row to a table's list."""
        self.rows[table.name].append(row)

    def extend(self, other: RowBatch) -> None:
        """Append another batch's rows."""
        for name, rows in other.rows.items():
            self.rows[name].extend(rows)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    """What one drain produced for one customer."""

    customer_id: str
    rows: RowBatch
    state: CustomerState


@dataclass(slots=True)
class EngineCounters:
    """What the engine did with its input; accepted + bad = received."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0


def signal_id_of(instance_id: str, kind: str, touchpoint: str, event_ids: Iterable[str]) -> str:
    """Content-derived id of a signal: the same evidence always has the same id."""
    text = "\x00".join((instance_id, kind, touchpoint, *event_ids))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class JourneyEngine:
    """Pure journey engine for one scenario: no I/O, no clock; time comes from event time.

    Call accept() per event, advance() with a watermark when time should move without events,
    and drain() to take the rows of everything that changed since the last drain.
    """

    def __init__(
        self,
        model: JourneyModel,
        scenario: str = "live",
        states: MutableMapping[str, CustomerState] | None = None,
    ) -> None:
        self.model = model
        self.scenario = scenario
        # Customer states; a shell may pass a mapping backed by durable storage (a Faust table).
        self.customers: MutableMapping[str, CustomerState] = states if states is not None else {}
        self.watermark = -(2**62)
        self.counters = EngineCounters()
        self._dirty: dict[str, CustomerState] = {}
        self._deadlines: list[tuple[int, str]] = []  # (time an open instance times out, customer)
        self._event_rows: dict[str, list[Row]] = {}
        self._single_stream = True
        self._channel_of = model.channel_of
        self._personas = model.by_persona

    # -- input ---------------------------------------------------------------------------------
    def check(self, event: TouchpointEvent) -> Rejection | None:
        """Definitions verdict for an event (unknown touchpoint or persona, wrong channel), unfolded."""
        return self.model.check(event)

    def accept(self, event: TouchpointEvent, stream_time: int | None = None) -> Rejection | None:
        """Fold one decoded event; returns the rejection if it must go to quarantine instead.

        stream_time is the latest event time of the stream (partition) the event came from; by
        default the engine's own watermark, which is right when one stream feeds the engine.
        """
        self.counters.received += 1
        persona = event.persona
        # The hot path skips check(): a known (touchpoint, channel) pair and a known or absent persona.
        if self._channel_of.get(event.touchpoint) != event.channel or (
            persona is not None and persona not in self._personas
        ):
            rejection = self.model.check(event)
            if rejection is not None:
                self.counters.bad += 1
                return rejection
        ts = event.occurred_ms
        occurrence = occurrence_of(event, ts)
        self.watermark = max(self.watermark, ts)
        state = self.customers.get(event.customer_id)
        if state is None:
            state = self.customers[event.customer_id] = CustomerState(event.customer_id)
        if stream_time is not None:
            self._single_stream = False
            state.stream_time = max(state.stream_time, stream_time)
        placement = add_event(state, self.model, occurrence, self.watermark)
        if placement is Placement.TOO_LATE:
            self.counters.bad += 1
            return Rejection(
                BadReason.TOO_LATE,
                "older than the allowed lateness; this customer's journey there is already final",
                "occurred_at",
            )
        self.counters.accepted += 1
        if placement is Placement.DUPLICATE:
            self.counters.duplicates += 1
            return None
        self._event_rows.setdefault(state.customer_id, []).append(self._event_row(event, ts))
        self._dirty[state.customer_id] = state
        current = state.open_instance()
        if current is not None:
            deadline = current.events[-1].ts + current.journey.abandon_after_ms
            heapq.heappush(self._deadlines, (deadline, state.customer_id))
        return None

    def count_bad(self) -> None:
        """Count a record rejected before it reached the engine (undecodable, schema)."""
        self.counters.received += 1
        self.counters.bad += 1

    def replay_customer(
        self, customer_id: str, occurrences: Iterable[Occurrence], batch: RowBatch | None = None
    ) -> RowBatch:
        """Fold one customer's recorded events and render their rows (into batch) as of the watermark.

        For replaying history customer by customer: advance() to the history's last event time
        first, and pass events that passed this model's registry, in (time, event id) order. The
        state is built, rendered and dropped here (no touchpoint_events rows: the caller has them),
        so memory holds one customer; add_event, expire and rendering are those of accept/drain.
        """
        state = CustomerState(customer_id)
        state.stream_time = self.watermark
        for occurrence in occurrences:
            self.counters.received += 1
            self.counters.accepted += 1
            # A fresh state has no frontier, so nothing is too late here.
            if add_event(state, self.model, occurrence, self.watermark) is Placement.DUPLICATE:
                self.counters.duplicates += 1
        expire(state, self.watermark)
        batch = RowBatch() if batch is None else batch
        self._render_customer(state, batch)
        return batch

    def mark_partitioned(self) -> None:
        """Measure lateness against each customer's own stream (input partition) from now on, as
        accept() with a stream_time does, even before any event: a shell whose first act can be
        advance() to the whole input's time (the Kafka worker's timeouts) must not forget history
        its customers' own partitions have not passed yet."""
        self._single_stream = False

    def advance(self, watermark: int) -> None:
        """Move time forward: close instances idle for longer than their abandon_after."""
        self.watermark = max(self.watermark, watermark)
        while self._deadlines and self._deadlines[0][0] < self.watermark:
            _, customer_id = heapq.heappop(self._deadlines)
            state = self.customers.get(customer_id)
            if state is not None and expire(state, self.watermark):
                self._dirty[customer_id] = state

    # -- output --------------------------------------------------------------------------------
    def drain(self) -> RowBatch:
        """Rows for every event accepted and every instance changed since the last drain."""
        batch = RowBatch()
        for update in self.drain_updates():
            batch.extend(update.rows)
        return batch

    def drain_updates(self) -> list[CustomerUpdate]:
        """Per customer changed since the last drain: its new rows and its state after them."""
        self.advance(self.watermark)
        lateness = self.model.settings.allowed_lateness
        updates = []
        for customer_id, state in self._dirty.items():
            rows = RowBatch()
            for row in self._event_rows.pop(customer_id, ()):
                rows.add(schema.TOUCHPOINT_EVENTS, row)
            self._render_customer(state, rows)
            # One stream: its watermark bounds lateness for everyone. Several (Kafka partitions): a
            # customer's own partition's progress does, so a lagging partition loses nothing.
            stream_time = self.watermark if self._single_stream else state.stream_time
            forget_settled(state, self.model, stream_time - lateness)
            updates.append(CustomerUpdate(customer_id, rows, state))
        self._dirty = {}
        return updates

    def forget(self, customer_id: str) -> bool:
        """Drop everything held for a customer (erasure): its state, its changes and event rows not
        drained yet, and its scheduled timeouts. Returns whether it had a state."""
        self._dirty.pop(customer_id, None)
        self._event_rows.pop(customer_id, None)
        if any(entry[1] == customer_id for entry in self._deadlines):
            self._deadlines = [entry for entry in self._deadlines if entry[1] != customer_id]
            heapq.heapify(self._deadlines)
        return self.customers.pop(customer_id, None) is not None

    def forget_cached(self) -> None:
        """Drop pending deadlines (after a rebalance the shell reloads states from storage)."""
        self._deadlines = []
        self._dirty = {}
        self._event_rows = {}

    def schedule(self, state: CustomerState) -> None:
        """Register a loaded state's open instance for timeout (used when states are recovered)."""
        current = state.open_instance()
        if current is not None:
            last = current.events[-1].ts
            self.watermark = max(self.watermark, last)
            heapq.heappush(self._deadlines, (last + current.journey.abandon_after_ms, state.customer_id))

    def open_instances(self) -> int:
        """How many journey instances are open now."""
        return sum(1 for state in self.customers.values() if state.open_instance() is not None)

    def _event_row(self, event: TouchpointEvent, ts: int) -> Row:
        survey = event.survey
        return touchpoint_event_row(
            scenario=self.scenario,
            event_id=event.event_id,
            customer_id=event.customer_id,
            occurred_at=ts,
            channel=event.channel,
            touchpoint=event.touchpoint,
            owner_team=self.model.owner_of.get(event.touchpoint, ""),
            persona=event.persona,
            outcome=event.outcome.value if event.outcome is not None else None,
            employee_id=event.employee_id,
            survey_kind=survey.kind.value if survey is not None else None,
            survey_score=survey.score if survey is not None else None,
            survey_comment=survey.comment if survey is not None else None,
            attributes=orjson.dumps(event.attributes).decode() if event.attributes else "{}",
            source=event.source,
        )

    def _render_customer(self, state: CustomerState, batch: RowBatch) -> None:
        version = state.revision
        for gone in state.retired:
            self._tombstone(state, gone, version, batch)
        state.retired = []
        for instance in state.instances:
            if instance.dirty:
                render_instance(
                    self.model,
                    scenario=self.scenario,
                    state=state,
                    instance=instance,
                    version=version,
                    batch=batch,
                )
                instance.dirty = False

    def _tombstone(self, state: CustomerState, gone: Instance, version: int, batch: RowBatch) -> None:
        if not gone.written:
            return  # never written, nothing to delete
        if any(instance.instance_id == gone.instance_id for instance in state.instances):
            return  # the id lives on; its rows are rewritten by render_instance
        scenario, customer = self.scenario, state.customer_id
        first, last = gone.events[0].ts, gone.events[-1].ts
        journey = gone.journey
        batch.add(
            schema.JOURNEY_INSTANCES,
            journey_instance_row(
                scenario=scenario,
                instance_id=gone.instance_id,
                customer_id=customer,
                persona=gone.persona,
                journey_id=journey.id,
                journey_version=journey.version,
                status=gone.status.value,
                end_reason=None,
                path=[],
                path_event_ids=[],
                events=0,
                cost=0,
                fitness=0.0,
                deviation_count=0,
                started_at=first,
                last_event_at=last,
                ended_at=None,
                version=version,
                is_deleted=1,
            ),
        )
        _tombstone_tail(
            scenario, instance=gone, customer=customer, version=version, batch=batch, keep=(0, 0, 0)
        )


def _tombstone_tail(
    scenario: str,
    *,
    instance: Instance,
    customer: str,
    version: int,
    batch: RowBatch,
    keep: tuple[int, int, int],
) -> None:
    """Delete rows idx >= keep[i] that an earlier render wrote for this instance."""
    ts = instance.events[0].ts
    journey = instance.journey
    iid, persona = instance.instance_id, instance.persona
    for idx in range(keep[0], instance.emitted[0]):
        batch.add(
            schema.DEVIATIONS,
            deviation_row(
                scenario=scenario,
                instance_id=iid,
                idx=idx,
                customer_id=customer,
                persona=persona,
                journey_id=journey.id,
                journey_version=journey.version,
                kind="",
                step="",
                touchpoint="",
                channel="",
                owner_team="",
                occurred_at=ts,
                event_ids=[],
                detail="",
                cost=0,
                version=version,
                is_deleted=1,
            ),
        )
    for idx in range(keep[1], instance.emitted[1]):
        batch.add(
            schema.FRICTION_SIGNALS,
            friction_signal_row(
                scenario=scenario,
                instance_id=iid,
                idx=idx,
                signal_id="",
                customer_id=customer,
                persona=persona,
                journey_id=journey.id,
                journey_version=journey.version,
                touchpoint="",
                owner_team="",
                kind="",
                weight=0.0,
                occurred_at=ts,
                event_ids=[],
                version=version,
                is_deleted=1,
            ),
        )
    for idx in range(keep[2], instance.emitted[2]):
        batch.add(
            schema.DELIGHT_SIGNALS,
            (scenario, iid, idx, customer, persona, "", "", None, "", 0, ts, [], version, 1),
        )


def render_instance(
    model: JourneyModel,
    *,
    scenario: str,
    state: CustomerState,
    instance: Instance,
    version: int,
    batch: RowBatch,
) -> None:
    """Write the instance row and its deviation, friction, delight and attribution rows."""
    journey = instance.journey
    events = instance.events
    path = [event.touchpoint for event in events]
    status = instance.status
    end_state = len(journey.steps) if instance.full_alignment else None
    moves = align(journey, path, end_state)
    deviations = deviations_of(journey, events, moves, model.channel_of)
    if status is Status.ABANDONED:
        done = max((move.step for move in moves if move.event is not None), default=0)
        next_step = journey.steps[min(done, len(journey.steps) - 1)]
        last = events[-1]
        deviations.append(
            Deviation(
                DeviationKind.ABANDONED,
                next_step.name,
                last.touchpoint,
                last.channel,
                last.ts,
                (last.event_id,),
                f"no event within {format_duration(journey.abandon_after_ms)} before step '{next_step.name}'",
                1,
            )
        )
    cost = instance.cost
    fitness = 1.0 - cost / (len(path) + journey.shortest_ideal_length)
    settings = model.settings.friction
    deviating = {
        event_id
        for deviation in deviations
        if deviation.kind in DEVIATING_KINDS
        for event_id in deviation.event_ids
    }
    attributions = attribute_support(events, deviating, settings)
    friction = friction_of(events, deviations, attributions, status is Status.ABANDONED, settings)
    delight = delight_of(events, settings)

    customer, iid, persona = state.customer_id, instance.instance_id, instance.persona
    ended = events[-1].ts if instance.closure is not None else None
    batch.add(
        schema.JOURNEY_INSTANCES,
        journey_instance_row(
            scenario=scenario,
            instance_id=iid,
            customer_id=customer,
            persona=persona,
            journey_id=journey.id,
            journey_version=journey.version,
            status=status.value,
            end_reason=instance.closure.value if instance.closure is not None else None,
            path=path,
            path_event_ids=[event.event_id for event in events],
            events=len(path),
            cost=cost,
            fitness=fitness,
            deviation_count=len(deviations),
            started_at=events[0].ts,
            last_event_at=events[-1].ts,
            ended_at=ended,
            version=version,
            is_deleted=0,
        ),
    )
    owner_of = model.owner_of
    for idx, deviation in enumerate(deviations):
        batch.add(
            schema.DEVIATIONS,
            deviation_row(
                scenario=scenario,
                instance_id=iid,
                idx=idx,
                customer_id=customer,
                persona=persona,
                journey_id=journey.id,
                journey_version=journey.version,
                kind=deviation.kind.value,
                step=deviation.step,
                touchpoint=deviation.touchpoint,
                channel=deviation.channel,
                owner_team=owner_of.get(deviation.touchpoint, ""),
                occurred_at=deviation.ts,
                event_ids=list(deviation.event_ids),
                detail=deviation.detail,
                cost=deviation.cost,
                version=version,
                is_deleted=0,
            ),
        )
    for idx, signal in enumerate(friction):
        batch.add(
            schema.FRICTION_SIGNALS,
            friction_signal_row(
                scenario=scenario,
                instance_id=iid,
                idx=idx,
                signal_id=signal_id_of(iid, signal.kind.value, signal.touchpoint, signal.event_ids),
                customer_id=customer,
                persona=persona,
                journey_id=journey.id,
                journey_version=journey.version,
                touchpoint=signal.touchpoint,
                owner_team=owner_of.get(signal.touchpoint, ""),
                kind=signal.kind.value,
                weight=signal.weight,
                occurred_at=signal.ts,
                event_ids=list(signal.event_ids),
                version=version,
                is_deleted=0,
            ),
        )
    for idx, delighted in enumerate(delight):
        batch.add(
            schema.DELIGHT_SIGNALS,
            delight_signal_row(
                scenario=scenario,
                instance_id=iid,
                idx=idx,
                customer_id=customer,
                persona=persona,
                touchpoint=delighted.touchpoint,
                owner_team=owner_of.get(delighted.touchpoint, ""),
                employee_id=delighted.employee_id,
                survey_kind=delighted.survey_kind,
                score=delighted.score,
                occurred_at=delighted.ts,
                event_ids=list(delighted.event_ids),
                version=version,
                is_deleted=0,
            ),
        )
    for item in attributions:
        upstream = item.upstream
        batch.add(
            schema.SUPPORT_ATTRIBUTION,
            support_attribution_row(
                scenario=scenario,
                support_event_id=item.support.event_id,
                instance_id=iid,
                customer_id=customer,
                persona=persona,
                support_touchpoint=item.support.touchpoint,
                upstream_touchpoint=upstream.touchpoint if upstream else None,
                upstream_owner_team=owner_of.get(upstream.touchpoint, "") if upstream else None,
                upstream_event_id=upstream.event_id if upstream else None,
                rule=item.rule.value,
                occurred_at=item.support.ts,
                version=version,
                is_deleted=0,
            ),
        )
    counts = (len(deviations), len(friction), len(delight))
    _tombstone_tail(scenario, instance=instance, customer=customer, version=version, batch=batch, keep=counts)
    instance.emitted = counts
    instance.written = True
