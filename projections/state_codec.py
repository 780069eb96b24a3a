"""Compact bytes for one customer's journey state (what a changelog-backed table stores)."""

from __future__ import annotations

from typing import Any

import orjson

from projections.customer import Closure, CustomerState, Instance, instance_id_of
from projections.journeys import JourneyModel
from projections.occurrence import Occurrence

FORMAT = 1


def encode_state(state: CustomerState) -> bytes:
    """Serialise a customer's state; event times are deltas from the previous event."""
    instances: list[Any] = []
    previous_ts = 0
    for instance in state.instances:
        events: list[Any] = []
        for event in instance.events:
            events.append(
                [
                    event.ts - previous_ts,
                    event.event_id,
                    event.touchpoint,
                    event.channel,
                    event.outcome,
                    event.persona,
                    event.employee_id,
                    event.survey_kind,
                    event.survey_score,
                ]
            )
            previous_ts = event.ts
        instances.append(
            [
                instance.journey.key,
                instance.persona,
                instance.closure.value if instance.closure is not None else None,
                list(instance.emitted),
                instance.written,
                events,
            ]
        )
    return orjson.dumps(
        [
            FORMAT,
            state.customer_id,
            state.frontier,
            state.persona_before,
            state.revision,
            state.events_accepted,
            state.stream_time,
            instances,
        ]
    )


def decode_state(raw: bytes, model: JourneyModel) -> CustomerState:
    """Rebuild a customer's state; alignment costs are recomputed by folding the events again."""
    version, customer_id, frontier, persona_before, revision, accepted, stream_time, instances = orjson.loads(
        raw
    )
    if version != FORMAT:
        msg = f"unknown journey state format {version}"
        raise ValueError(msg)
    journeys = {journey.key: journey for journey in model.journeys}
    state = CustomerState(
        customer_id,
        frontier=frontier,
        persona_before=persona_before,
        revision=revision,
        events_accepted=accepted,
        stream_time=stream_time,
    )
    previous_ts = 0
    for key, persona, closure, emitted, written, events in instances:
        journey = journeys[key]
        instance = Instance(
            instance_id="",
            journey=journey,
            persona=persona,
            events=[],
            base=0,
            relative=journey.initial_costs,
            emitted=(emitted[0], emitted[1], emitted[2]),
            written=written,
            dirty=False,
        )
        for delta, *rest in events:
            previous_ts += delta
            event = Occurrence(previous_ts, *rest)
            instance.events.append(event)
            instance.base, instance.relative = journey.advance_cached(
                instance.base, instance.relative, event.touchpoint
            )
            instance.goal_reached = instance.goal_reached or event.touchpoint in journey.goal_touchpoints
            state.seen.add(event.event_id)
        instance.instance_id = _instance_id(customer_id, instance)
        instance.closure = Closure(closure) if closure is not None else None
        state.instances.append(instance)
    return state


def _instance_id(customer_id: str, instance: Instance) -> str:
    return instance_id_of(customer_id, instance.events[0].event_id)
