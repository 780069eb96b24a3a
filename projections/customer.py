"""Per-customer journey state: segmenting events into journey instances and folding them in."""

from __future__ import annotations

import hashlib
from bisect import insort
from dataclasses import dataclass, field
from enum import StrEnum

from projections.journeys import Journey, JourneyModel
from projections.occurrence import Occurrence


class Closure(StrEnum):
    """Why an instance ended; TIMEOUT alone can be undone by an event that arrives later."""

    FINAL_STEP = "final_step"  # the journey's last step happened after its goal
    NEXT_JOURNEY = "next_journey"  # goal reached, then the journey's entry step started again
    IDLE = "idle"  # the next event came after abandon_after
    TIMEOUT = "timeout"  # no event within abandon_after up to the watermark


class Status(StrEnum):
    """Where a journey instance stands."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


def instance_id_of(customer_id: str, first_event_id: str) -> str:
    """Deterministic instance id: the same first event always opens the same instance."""
    digest = hashlib.blake2b(f"{customer_id}\x00{first_event_id}".encode(), digest_size=8)
    return digest.hexdigest()


@dataclass(slots=True)
class Instance:
    """One customer's run through one journey; costs are kept as base + relative vector."""

    instance_id: str
    journey: Journey
    persona: str
    events: list[Occurrence]
    base: int
    relative: tuple[int, ...]
    goal_reached: bool = False
    closure: Closure | None = None
    # How many rows of each per-instance table were last written: shrinking lists need tombstones.
    emitted: tuple[int, int, int] = (0, 0, 0)
    written: bool = False  # its row exists in the projections
    dirty: bool = True

    @property
    def status(self) -> Status:
        """Completed once the goal happened; abandoned if it ended without; else in progress."""
        if self.goal_reached:
            return Status.COMPLETED
        return Status.ABANDONED if self.closure is not None else Status.IN_PROGRESS

    @property
    def full_alignment(self) -> bool:
        """Closed with the goal reached: every remaining required step counts as missing."""
        return self.goal_reached and self.closure is not None

    @property
    def cost(self) -> int:
        """Least alignment cost: to the journey's end when complete, else of the best prefix;
        an abandoned instance pays 1 more for the abandonment itself."""
        if self.full_alignment:
            return self.base + self.relative[-1]
        return self.base + (1 if self.status is Status.ABANDONED else 0)

    def end_bound(self) -> int:
        """Events at or after this time cannot join this instance (used when forgetting it)."""
        last = self.events[-1].ts
        if self.closure in (Closure.IDLE, Closure.TIMEOUT):
            return last + self.journey.abandon_after_ms + 1
        return last + 1


@dataclass(slots=True)
class CustomerState:
    """Everything the engine remembers of one customer; retained events cover open instances and
    closed ones still within the allowed lateness."""

    customer_id: str
    instances: list[Instance] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    frontier: int = -(2**62)  # events before this time are too late to place
    persona_before: str | None = None  # last known persona among forgotten events
    revision: int = 0  # grows with every change; orders row versions
    # Latest event time of the stream this customer's events come from (their Kafka partition, or
    # the whole file): what "older than the allowed lateness" is measured against.
    stream_time: int = -(2**62)
    events_accepted: int = 0
    retired: list[Instance] = field(default_factory=list)  # instances that no longer exist

    @property
    def last(self) -> Occurrence | None:
        """The latest retained event in (time, id) order."""
        return self.instances[-1].events[-1] if self.instances else None

    def open_instance(self) -> Instance | None:
        """The instance still accepting events, if any."""
        if self.instances and self.instances[-1].closure is None:
            return self.instances[-1]
        return None


def _persona(model: JourneyModel, event: Occurrence, known: str | None) -> str:
    if model.persona_known(event.persona):
        return event.persona  # type: ignore[return-value]
    return known if known is not None else model.default_persona


def _start(state: CustomerState, model: JourneyModel, event: Occurrence, known: str | None) -> Instance:
    persona = _persona(model, event, known)
    journey = model.journey_for(persona, event.touchpoint)
    return Instance(
        instance_id=instance_id_of(state.customer_id, event.event_id),
        journey=journey,
        persona=persona,
        events=[],
        base=0,
        relative=journey.initial_costs,
    )


def _append(instance: Instance, event: Occurrence) -> None:
    journey = instance.journey
    instance.events.append(event)
    instance.base, instance.relative = journey.advance_cached(
        instance.base, instance.relative, event.touchpoint
    )
    if event.touchpoint in journey.goal_touchpoints:
        instance.goal_reached = True
    if instance.goal_reached and event.touchpoint in journey.final_touchpoints:
        instance.closure = Closure.FINAL_STEP
    instance.dirty = True


def _boundary(instance: Instance, event: Occurrence) -> Closure | None:
    """Whether an event that follows an open instance in time starts a new one, and why."""
    journey = instance.journey
    if event.ts - instance.events[-1].ts > journey.abandon_after_ms:
        return Closure.IDLE
    if instance.goal_reached and event.touchpoint in journey.entry_touchpoints:
        return Closure.NEXT_JOURNEY
    return None


def _known_persona(model: JourneyModel, instance: Instance | None, before: str | None) -> str | None:
    """The customer's last known persona after an instance: the latest persona its events named,
    else the persona the instance itself ran under (which already inherited the earlier one)."""
    if instance is None:
        return before
    for event in reversed(instance.events):
        if model.persona_known(event.persona):
            return event.persona
    return instance.persona


def place_in_order(state: CustomerState, model: JourneyModel, event: Occurrence) -> None:
    """Fold an event that comes after every retained event: O(steps), or O(1) on a cache hit."""
    current = state.instances[-1] if state.instances else None
    if current is not None and current.closure is Closure.TIMEOUT:
        # The watermark closed it; the boundary rules below decide again now that an event came.
        current.closure = None
        current.dirty = True
    if current is not None and current.closure is None:
        reason = _boundary(current, event)
        if reason is not None:
            current.closure = reason
            current.dirty = True
    if current is None or current.closure is not None:
        known = _known_persona(model, current, state.persona_before)
        current = _start(state, model, event, known)
        state.instances.append(current)
    _append(current, event)


def resegment(state: CustomerState, model: JourneyModel, watermark: int) -> None:
    """Recompute every retained instance from its events in (time, id) order.

    Used when an event arrives out of order: the result equals what in-order arrival gives, so
    final projections never depend on arrival order. Instances that no longer exist are retired
    (their rows are tombstoned); surviving ids keep their emitted-row counts.
    """
    events = [event for instance in state.instances for event in instance.events]
    previous = {instance.instance_id: instance for instance in state.instances}
    state.instances = []
    for event in events:
        place_in_order(state, model, event)
    expire(state, watermark)
    for instance in state.instances:
        old = previous.pop(instance.instance_id, None)
        if old is not None:
            instance.emitted, instance.written = old.emitted, old.written
    state.retired.extend(previous.values())


class Placement(StrEnum):
    """What folding an event did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # this event_id was already folded: nothing changes
    TOO_LATE = "too_late"  # older than the allowed lateness: its instance was already forgotten


def add_event(state: CustomerState, model: JourneyModel, event: Occurrence, watermark: int) -> Placement:
    """Fold a new event into the customer's state, in event-time order whatever the arrival order."""
    if event.event_id in state.seen:
        return Placement.DUPLICATE
    if event.ts < state.frontier:
        return Placement.TOO_LATE
    state.seen.add(event.event_id)
    state.events_accepted += 1
    state.revision += 1
    last = state.last
    if last is None or (event.ts, event.event_id) > (last.ts, last.event_id):
        place_in_order(state, model, event)
        return Placement.ACCEPTED
    # Out of order: insert into the retained events and recompute the affected instances.
    key = (event.ts, event.event_id)
    target = next(
        i
        for i, instance in enumerate(state.instances)
        if key < (instance.events[-1].ts, instance.events[-1].event_id)
    )  # exists: the event sorts before the last retained event
    insort(state.instances[target].events, event)
    _resegment_from(state, model, watermark, target)
    return Placement.ACCEPTED


def _resegment_from(state: CustomerState, model: JourneyModel, watermark: int, index: int) -> None:
    # Instances before the one that received the event cannot change only if nothing could
    # join them; the event may belong to the previous instance's idle gap, so start one earlier.
    start = max(0, index - 1)
    kept = state.instances[:start]
    tail = CustomerState(
        customer_id=state.customer_id,
        instances=state.instances[start:],
        persona_before=_known_persona(model, kept[-1] if kept else None, state.persona_before),
    )
    resegment(tail, model, watermark)
    state.instances = kept + tail.instances
    state.retired.extend(tail.retired)


def expire(state: CustomerState, watermark: int) -> bool:
    """Close the open instance when nothing happened within abandon_after up to the watermark."""
    current = state.open_instance()
    if current is None:
        return False
    if watermark - current.events[-1].ts > current.journey.abandon_after_ms:
        current.closure = Closure.TIMEOUT
        current.dirty = True
        state.revision += 1
        return True
    return False


def forget_settled(state: CustomerState, model: JourneyModel, horizon: int) -> int:
    """Drop closed, already-written instances that ended before the horizon; returns how many."""
    dropped = 0
    while (
        len(state.instances) > 0
        and state.instances[0].closure is not None
        and not state.instances[0].dirty
        and state.instances[0].end_bound() < horizon
    ):
        gone = state.instances.pop(0)
        state.frontier = max(state.frontier, gone.end_bound())
        state.persona_before = _known_persona(model, gone, state.persona_before)
        for event in gone.events:
            state.seen.discard(event.event_id)
        dropped += 1
    return dropped
