"""The engine against simulator ground truth: optimal costs, and every injected deviation found."""

from __future__ import annotations

import pytest

from projections.journeys import JourneyModel
from projections.native import native_available
from streams.common.engines import EngineKind
from streams.sim.accuracy import run_in_memory, score
from streams.sim.simulator import SimulationConfig, simulate


@pytest.mark.parametrize(
    "engine",
    [
        "python",
        pytest.param(
            "native",
            marks=pytest.mark.skipif(not native_available(), reason="the native extension is not built"),
        ),
    ],
)
def test_engine_recovers_the_injected_deviations(model: JourneyModel, engine: EngineKind) -> None:
    """On a seeded run, under either engine: no cost above the injected edits, >= 99% equal,
    precision/recall >= 0.99."""
    simulation = simulate(model, SimulationConfig(customers=3000, days=14, seed=101))
    result = score(simulation, run_in_memory(model, simulation.lines, engine_kind=engine))
    assert result.instances_found == result.instances_truth
    assert result.cost_higher == 0
    assert result.cost_equal >= 0.99 * result.instances_truth
    assert result.status_equal >= 0.99 * result.instances_truth
    assert set(result.kinds()) == {
        "missing_step", "unexpected_step", "out_of_order", "repeated_step",
        "channel_switch", "time_budget_exceeded", "abandoned",
    }  # fmt: skip
    for kind in result.kinds():
        assert result.precision(kind) >= 0.99, kind
        assert result.recall(kind) >= 0.99, kind


def test_simulator_is_deterministic(model: JourneyModel) -> None:
    """The same seed writes the same lines; another seed does not."""
    first = simulate(model, SimulationConfig(customers=50, seed=4)).lines
    assert simulate(model, SimulationConfig(customers=50, seed=4)).lines == first
    assert simulate(model, SimulationConfig(customers=50, seed=5)).lines != first
