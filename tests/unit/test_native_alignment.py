"""Differential: the native alignment and deviation classifier equal projections/alignment.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.alignment import align_uncached, cost_table, deviations_of
from projections.journeys import Journey, JourneyDef, StepDef, compile_journey
from projections.native import NativeJourney
from projections.occurrence import Occurrence

ALPHABET = ["a.one", "a.two", "b.three", "b.four", "c.five", "c.six"]
UNKNOWN = "z.unknown"  # a touchpoint no journey step names
CHANNEL_OF = {touchpoint: touchpoint.split(".")[0] for touchpoint in [*ALPHABET, UNKNOWN]}
CHANNELS = ["a", "b", "c", "app"]


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    """Journeys with optional, alternative (any_of), repeatable, timed (within) and goal steps."""
    count = draw(st.integers(1, 6))
    steps = []
    for index in range(count):
        targets = draw(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=3, unique=True))
        optional = draw(st.booleans())
        steps.append(
            StepDef(
                name=f"s{index}",
                touchpoint=targets[0] if len(targets) == 1 else None,
                any_of=tuple(targets) if len(targets) > 1 else None,
                optional=optional,
                repeatable=draw(st.booleans()),
                within=draw(st.none() | st.integers(1, 400_000)) if index > 0 else None,
            )
        )
    if all(step.optional for step in steps):
        steps[-1] = steps[-1].model_copy(update={"optional": False})
    required = [i for i, step in enumerate(steps) if not step.optional]
    goal = draw(st.none() | st.sampled_from(required))
    if goal is not None:
        steps[goal] = steps[goal].model_copy(update={"goal": True})
    definition = JourneyDef(id="j", persona="p", version=1, steps=tuple(steps))
    return compile_journey(definition, CHANNEL_OF)


@st.composite
def paths(draw: st.DrawFn) -> list[Occurrence]:
    """Event paths in time order: known and unknown touchpoints, repeats, channel switches, gaps."""
    touchpoints = draw(st.lists(st.sampled_from([*ALPHABET, UNKNOWN]), max_size=10))
    ts = draw(st.integers(0, 2_000_000_000_000))
    events = []
    for i, touchpoint in enumerate(touchpoints):
        ts += draw(st.sampled_from([0, 1, 999, 1000, 61_000, 3_600_000 + 7])) + draw(st.integers(0, 300_000))
        channel = draw(st.sampled_from([CHANNEL_OF[touchpoint], *CHANNELS]))
        events.append(Occurrence(ts, f"e{i}", touchpoint, channel, None, None, None, None, None))
    return events


def _incremental(journey: Journey, path: list[str]) -> list[tuple[int, tuple[int, ...]]]:
    base, relative = 0, journey.initial_costs
    out = []
    for touchpoint in path:
        base, relative = journey.advance_cached(base, relative, touchpoint)
        out.append((base, relative))
    return out


def _normalised(base: int, relative: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """advance_cached's first step keeps the initial vector un-normalised; compare base+relative."""
    return base + min(relative), tuple(cost - min(relative) for cost in relative)


def _assert_identical(journey: Journey, events: list[Occurrence]) -> None:
    native = NativeJourney(journey, CHANNEL_OF)
    path = [event.touchpoint for event in events]
    assert native.cost_table(path) == cost_table(journey, path)
    expected_fold = [_normalised(base, rel) for base, rel in _incremental(journey, path)]
    assert [_normalised(base, rel) for base, rel in native.fold(path)] == expected_fold
    for end_state in [None, *range(len(journey.steps) + 1)]:
        moves = align_uncached(journey, path, end_state)
        assert native.align(path, end_state) == moves
        expected = deviations_of(journey, events, moves, CHANNEL_OF)
        assert native.deviations_of(events, moves) == expected
        assert native.deviations(events, end_state) == expected


@settings(max_examples=600, deadline=None)
@given(journeys(), paths())
def test_alignment_and_deviations_are_identical(journey: Journey, events: list[Occurrence]) -> None:
    """Cost rows, incremental costs, moves for every end state and the deviation lists agree."""
    _assert_identical(journey, events)


def test_a_switched_late_path_with_a_stray_event_reads_the_same() -> None:
    """A channel switch, a stray event and a blown time budget: the same three deviations."""
    steps = (
        StepDef(name="s0", touchpoint="a.one"),
        StepDef(name="s1", touchpoint="a.two"),
        StepDef(name="s2", touchpoint="b.three", within=60_000),
    )
    journey = compile_journey(JourneyDef(id="j", persona="p", version=1, steps=steps), CHANNEL_OF)
    events = [
        Occurrence(0, "e0", "a.one", "a", None, None, None, None, None),
        Occurrence(1000, "e1", "a.two", "app", None, None, None, None, None),
        Occurrence(2000, "e2", UNKNOWN, "z", None, None, None, None, None),
        Occurrence(500_000, "e3", "b.three", "b", None, None, None, None, None),
    ]
    _assert_identical(journey, events)
    deviations = NativeJourney(journey, CHANNEL_OF).deviations(events, 3)
    assert [d.kind.value for d in deviations] == ["channel_switch", "unexpected_step", "time_budget_exceeded"]
    assert deviations[2].detail == "took 8m19s, budget 1m (over by 7m19s)"


@settings(max_examples=300, deadline=None)
@given(journeys(), st.data())
def test_one_step_of_the_cost_recurrence_is_identical(journey: Journey, data: st.DataObject) -> None:
    """Journey.advance from any cost vector (not only reachable ones) gives the same vector."""
    size = len(journey.initial_costs)
    costs = tuple(data.draw(st.lists(st.integers(0, 9), min_size=size, max_size=size)))
    touchpoint = data.draw(st.sampled_from([*ALPHABET, UNKNOWN]))
    assert NativeJourney(journey, CHANNEL_OF).advance(costs, touchpoint) == journey.advance(costs, touchpoint)
