"""Customer state survives being stored: a restored state goes on exactly like the original."""

from __future__ import annotations

from events.codec import decode_event
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
