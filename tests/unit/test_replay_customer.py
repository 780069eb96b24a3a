"""The engine's replay entry point gives the rows that live arrival-order processing gives."""

from __future__ import annotations

from collections import defaultdict

from events.codec import check_event
from events.model import TouchpointEvent
from projections.engine import JourneyEngine, RowBatch
from projections.journeys import JourneyModel
from projections.occurrence import occurrence_of
from streams.sim.accuracy import latest_rows, run_in_memory
from streams.sim.simulator import SimulationConfig, simulate


def _content(rows: dict[str, dict[str, object]]) -> dict[str, tuple[object, ...]]:
    return {key: tuple(v for k, v in row.items() if k != "version") for key, row in rows.items()}


def test_customer_by_customer_replay_equals_the_live_run(model: JourneyModel) -> None:
    """Late, duplicate and out-of-order arrivals live; sorted per customer in replay: same instances,
    same deviations (only row versions may differ)."""
    simulation = simulate(model, SimulationConfig(customers=300, days=14, seed=4))
    live_instances, live_deviations = latest_rows(run_in_memory(model, simulation.lines, drain_every=500))

    engine = JourneyEngine(model)
    by_customer: dict[str, dict[str, TouchpointEvent]] = defaultdict(dict)
    for line in simulation.lines:
        event = check_event(line)
        if isinstance(event, TouchpointEvent) and engine.check(event) is None:
            by_customer[event.customer_id][event.event_id] = event
    engine.advance(max(e.occurred_ms for events in by_customer.values() for e in events.values()))
    batch = RowBatch()
    for customer in sorted(by_customer):
        occurrences = sorted(
            (occurrence_of(e) for e in by_customer[customer].values()), key=lambda o: (o.ts, o.event_id)
        )
        engine.replay_customer(customer, occurrences, batch)
    replay_instances, replay_deviations = latest_rows(batch)

    assert len(replay_instances) > 300
    assert _content(replay_instances) == _content(live_instances)
    assert {key: [_content({"d": d})["d"] for d in devs] for key, devs in replay_deviations.items()} == {
        key: [_content({"d": d})["d"] for d in devs] for key, devs in live_deviations.items()
    }
    assert engine.customers == {}  # nothing kept between customers
