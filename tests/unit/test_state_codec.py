"""Customer state survives being stored: a restored state goes on exactly like the original."""

from __future__ import annotations

import orjson

from events.codec import decode_event
from projections.customer import CustomerState
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.state_codec import decode_state, encode_state
from streams.sim.accuracy import latest_rows
from streams.sim.simulator import SimulationConfig, simulate


def test_a_restored_engine_continues_like_the_original(model: JourneyModel) -> None:
    """Half the input, store every state, restore into a new engine, feed the rest: same rows."""
    lines = simulate(model, SimulationConfig(customers=120, days=10, seed=8, bad_rate=0.0)).lines
    events = [decode_event(line) for line in lines]
    half = len(events) // 2

    original = JourneyEngine(model)
    for event in events[:half]:
        original.accept(event)
    original.drain()
    restored = JourneyEngine(model)
    for state in original.customers.values():
        copy = decode_state(encode_state(state), model)
        restored.customers[copy.customer_id] = copy
        restored.schedule(copy)
    assert restored.watermark == original.watermark

    for event in events[half:]:
        original.accept(event)
        restored.accept(event)
    assert latest_rows(restored.drain()) == latest_rows(original.drain())


def _format_1(state: CustomerState) -> bytes:
    """The state as format 1 wrote it (data dirs and changelogs from before format 2)."""
    instances, previous = [], 0
    for instance in state.instances:
        events = []
        for event in instance.events:
            events.append([event.ts - previous, *event[1:]])
            previous = event.ts
        closure = instance.closure.value if instance.closure is not None else None
        emitted, written = list(instance.emitted), instance.written
        instances.append([instance.journey.key, instance.persona, closure, emitted, written, events])
    return orjson.dumps(
        [1, state.customer_id, state.frontier, state.persona_before, state.revision,
         state.events_accepted, state.stream_time, instances]
    )  # fmt: skip


def test_states_kept_in_format_1_read_as_they_were_and_format_2_is_smaller(model: JourneyModel) -> None:
    """Kept states of an older touchpath decode to the same state; the current format is smaller."""
    lines = simulate(model, SimulationConfig(customers=120, days=10, seed=8, bad_rate=0.0)).lines
    engine = JourneyEngine(model)
    for line in lines:
        engine.accept(decode_event(line))
    engine.drain()
    old = new = 0
    for state in engine.customers.values():
        raw = _format_1(state)
        assert encode_state(decode_state(raw, model)) == encode_state(state)
        old, new = old + len(raw), new + len(encode_state(state))
    assert new < 0.85 * old
