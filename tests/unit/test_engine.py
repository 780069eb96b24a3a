"""The journey engine: duplicates, arrival order, late corrections, abandonment, lateness, persona."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.codec import decode_event
from events.errors import BadReason
from projections.engine import JourneyEngine, RowBatch
from projections.journeys import JourneyModel, parse_definitions
from streams.common.settings import example_journeys
from streams.sim.accuracy import latest_rows, run_in_memory
from streams.sim.simulator import SimulationConfig, simulate
from tests.conftest import event_line
from tests.conftest import online_journey as _online

DAY = 24 * 60


def _feed(model: JourneyModel, lines: list[bytes], drain_every: int = 3) -> tuple[JourneyEngine, RowBatch]:
    engine = JourneyEngine(model)
    batch = RowBatch()
    for i, line in enumerate(lines, start=1):
        engine.accept(decode_event(line))
        if i % drain_every == 0:
            batch.extend(engine.drain())
    batch.extend(engine.drain())
    return engine, batch


def _content(batch: RowBatch) -> tuple[dict[str, Any], dict[str, Any]]:
    """Final rows without row versions, keyed by instance."""
    instances, deviations = latest_rows(batch)
    strip = lambda record: {k: v for k, v in record.items() if k != "version"}  # noqa: E731
    return (
        {key: strip(row) for key, row in instances.items()},
        {key: [strip(row) for row in rows] for key, rows in deviations.items()},
    )


def test_a_conformant_path_costs_nothing(model: JourneyModel) -> None:
    """The ideal path gives a completed instance with cost 0 and fitness 1."""
    _, batch = _feed(model, _online())
    instances, deviations = latest_rows(batch)
    (row,) = instances.values()
    assert (row["status"], row["cost"], row["fitness"]) == ("completed", 0, 1.0)
    assert not deviations


def test_duplicates_change_nothing(model: JourneyModel) -> None:
    """Re-sent events (same event_id) leave every projection row as it was."""
    lines = _online()
    engine, with_dupes = _feed(model, [*lines, lines[1], lines[3], lines[1]])
    _, without = _feed(model, lines)
    assert _content(with_dupes) == _content(without)
    assert engine.counters.duplicates == 3
    assert len(with_dupes.rows["touchpoint_events"]) == len(lines)


def test_late_event_corrects_the_instance_and_retracts_the_deviation(model: JourneyModel) -> None:
    """A step that arrives late fills the gap: the missing_step row is tombstoned, cost back to 0."""
    lines = _online()
    engine, batch = _feed(model, [lines[0], lines[1], lines[3], lines[4]], drain_every=1)
    _, before = latest_rows(batch)
    assert [d["kind"] for rows in before.values() for d in rows] == ["missing_step"]
    engine.accept(decode_event(lines[2]))
    batch.extend(engine.drain())
    instances, after = latest_rows(batch)
    assert not after
    assert [row["cost"] for row in instances.values()] == [0]


def test_instance_abandoned_when_the_watermark_passes_abandon_after(model: JourneyModel) -> None:
    """No event for longer than abandon_after (7 days online) abandons the instance."""
    lines = [*_online()[:3], event_line("other-1", "c2", "web.product_page", 8 * DAY)]
    _, batch = _feed(model, lines)
    instances, deviations = latest_rows(batch)
    mine = next(row for row in instances.values() if row["customer_id"] == "c1")
    assert mine["status"] == "abandoned"
    assert mine["end_reason"] == "timeout"
    assert [d["kind"] for d in deviations[str(mine["instance_id"])]] == ["abandoned"]


def test_event_within_abandon_after_reopens_a_timed_out_instance(model: JourneyModel) -> None:
    """A watermark timeout is undone when the customer's next event is within abandon_after."""
    lines = _online()
    early = [*lines[:3], event_line("other-1", "c2", "web.product_page", 7 * DAY + 25)]
    _, batch = _feed(model, [*early, *lines[3:]], drain_every=1)
    instances, _ = latest_rows(batch)
    mine = [row for row in instances.values() if row["customer_id"] == "c1"]
    assert len(mine) == 1
    assert mine[0]["status"] == "completed"


def test_events_older_than_allowed_lateness_are_quarantined(model: JourneyModel) -> None:
    """Once a journey is final (30 days later), an event inside it is rejected as too_late."""
    engine, _ = _feed(model, [*_online(), event_line("c9-1", "c9", "web.product_page", 60 * DAY)])
    engine.drain()
    verdict = engine.accept(decode_event(event_line("c1-late", "c1", "web.product_page", 15)))
    assert verdict is not None
    assert verdict.reason is BadReason.TOO_LATE


def test_later_instance_keeps_the_last_known_persona(model: JourneyModel) -> None:
    """A new journey with no persona on its events uses the customer's last known persona."""
    first = [
        event_line("s-1", "c3", "store.visit", 0, persona="store_shopper"),
        event_line("s-2", "c3", "store.purchase", 60),
        event_line("s-3", "c3", "email.csat_survey", 120, survey={"kind": "csat", "score": 5}),
    ]
    second = [event_line("s-4", "c3", "store.visit", 20 * DAY)]
    third = [event_line("s-5", "c3", "store.visit", 40 * DAY)]  # inherits through the second
    _, batch = _feed(model, first + second + third)
    instances, _ = latest_rows(batch)
    assert sorted(str(row["persona"]) for row in instances.values()) == ["store_shopper"] * 3
    assert sorted(str(row["journey_id"]) for row in instances.values()) == ["store_purchase"] * 3


def test_unknown_touchpoint_is_rejected_with_its_reason(model: JourneyModel) -> None:
    """Events for touchpoints outside the registry are bad events, not crashes."""
    engine = JourneyEngine(model)
    verdict = engine.accept(decode_event(event_line("x", "c", "web.teleport", 0)))
    assert verdict is not None
    assert verdict.reason is BadReason.UNKNOWN_TOUCHPOINT
    assert engine.counters.bad == 1


def test_unknown_persona_is_rejected_and_accepted_once_resent(model: JourneyModel) -> None:
    """A persona the journey file does not define is `unknown_persona`, not folded as the default;
    the same event re-sent after the persona is defined is accepted (it was never a duplicate)."""
    engine = JourneyEngine(model)
    line = event_line("p-1", "c", "email.campaign", 0, persona="vip_buyer")
    verdict = engine.accept(decode_event(line))
    assert verdict is not None
    assert (verdict.reason, verdict.field) == (BadReason.UNKNOWN_PERSONA, "persona")
    assert "vip_buyer" in verdict.detail
    assert engine.drain().rows["journey_instances"] == []
    assert engine.counters.bad == 1
    fixed = line.replace(b"vip_buyer", b"online_buyer")
    assert engine.accept(decode_event(fixed)) is None
    (row,) = engine.drain().rows["journey_instances"]
    assert row[3] == "online_buyer"


SIMULATION_LINES: list[bytes] = []


def _simulated(model: JourneyModel) -> list[bytes]:
    if not SIMULATION_LINES:
        config = SimulationConfig(customers=80, days=10, seed=21, bad_rate=0.0)
        SIMULATION_LINES.extend(simulate(model, config).lines)
    return SIMULATION_LINES


@pytest.fixture(scope="module")
def patient_model() -> JourneyModel:
    """The example journeys with a lateness allowance longer than any simulated history."""
    text = example_journeys().read_text().replace("allowed_lateness: 30d", "allowed_lateness: 3650d")
    return parse_definitions(text, "patient.yaml")


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), drain_every=st.sampled_from([1, 7, 50, 10_000]))
def test_results_do_not_depend_on_arrival_order(
    patient_model: JourneyModel, seed: int, drain_every: int
) -> None:
    """Any arrival order (and any drain cadence) gives the same final projections."""
    lines = _simulated(patient_model)
    shuffled = list(lines)
    random.Random(seed).shuffle(shuffled)
    reference = _content(run_in_memory(patient_model, lines))
    assert _content(run_in_memory(patient_model, shuffled, drain_every=drain_every)) == reference


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_delays_within_allowed_lateness_do_not_change_results(model: JourneyModel, seed: int) -> None:
    """Events delayed by up to 10 days (less than the 30-day allowance) change nothing."""
    lines = _simulated(model)
    rng = random.Random(seed)
    delayed = sorted(
        lines, key=lambda line: decode_event(line).occurred_ms + rng.randrange(10 * DAY * 60_000)
    )
    assert _content(run_in_memory(model, delayed, drain_every=5)) == _content(run_in_memory(model, lines))
