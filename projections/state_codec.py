"""Compact bytes for one customer's journey state (what a changelog-backed table stores)."""

from __future__ import annotations

from typing import Any

import orjson

from projections.customer import Closure, CustomerState, Instance, instance_id_of
from projections.journeys import JourneyModel
from projections.occurrence import Occurrence

# 2: an event's channel is left out when it is its touchpoint's prefix ("web" of "web.cart") and
# its trailing empty fields are left out; the "never" times (-2**62) are null. 1 is still read.
FORMAT = 2
NEVER = -(2**62)
_EVENT_FIELDS = 9


def _prefix(touchpoint: str) -> str:
    return touchpoint.split(".", 1)[0]


def _event(event: Occurrence, delta: int) -> list[Any]:
    """[delta, event_id, touchpoint, outcome, persona, employee_id, survey_kind, survey_score,
    channel], the channel null when it is the touchpoint's prefix, trailing nulls dropped."""
    channel = None if event.channel == _prefix(event.touchpoint) else event.channel
    fields = [delta, event.event_id, event.touchpoint, event.outcome, event.persona, event.employee_id,
              event.survey_kind, event.survey_score, channel]  # fmt: skip
    while fields[-1] is None:
        fields.pop()
    return fields


def encode_state(state: CustomerState) -> bytes:
    """Serialise a customer's state; event times are deltas from the previous event."""
    instances: list[Any] = []
    previous_ts = 0
    for instance in state.instances:
        events: list[Any] = []
        for event in instance.events:
            events.append(_event(event, event.ts - previous_ts))
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
            None if state.frontier == NEVER else state.frontier,
            state.persona_before,
            state.revision,
            state.events_accepted,
            None if state.stream_time == NEVER else state.stream_time,
            instances,
        ]
    )


def _occurrence(version: int, ts: int, fields: list[Any]) -> Occurrence:
    if version == 1:
        return Occurrence(ts, *fields)
    event_id, touchpoint, *rest = fields
    rest += [None] * (_EVENT_FIELDS - 3 - len(rest))
    outcome, persona, employee_id, survey_kind, survey_score, channel = rest
    channel = _prefix(touchpoint) if channel is None else channel
    return Occurrence(ts, event_id, touchpoint, channel, outcome, persona, employee_id, survey_kind,
                      survey_score)  # fmt: skip


def decode_state(raw: bytes, model: JourneyModel) -> CustomerState:
    """Rebuild a customer's state (format 1 or 2); alignment costs are recomputed by folding the
    events again."""
    version, *fields = orjson.loads(raw)
    if version not in (1, FORMAT):
        msg = f"unknown journey state format {version}"
        raise ValueError(msg)
    customer_id, frontier, persona_before, revision, accepted, stream_time, instances = fields
    journeys = {journey.key: journey for journey in model.journeys}
    state = CustomerState(
        customer_id,
        frontier=NEVER if frontier is None else frontier,
        persona_before=persona_before,
        revision=revision,
        events_accepted=accepted,
        stream_time=NEVER if stream_time is None else stream_time,
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
            event = _occurrence(version, previous_ts, rest)
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
