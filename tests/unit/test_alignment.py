"""Exact conformance: the incremental cost equals a brute-force edit distance to the journey."""

from __future__ import annotations

import itertools
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.alignment import DeviationKind, Op, align, cost_table, deviations_of
from projections.journeys import Journey, JourneyDef, StepDef, compile_journey
from projections.occurrence import Occurrence

ALPHABET = ["a.one", "a.two", "b.three", "b.four", "c.five"]
CHANNEL_OF = {touchpoint: touchpoint.split(".")[0] for touchpoint in ALPHABET}


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    """Small random journeys with optional, repeatable and alternative steps."""
    count = draw(st.integers(1, 4))
    steps = []
    for _ in range(count):
        targets = draw(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=2, unique=True))
        steps.append(
            StepDef(
                touchpoint=targets[0] if len(targets) == 1 else None,
                any_of=tuple(targets) if len(targets) > 1 else None,
                optional=draw(st.booleans()),
                repeatable=draw(st.booleans()),
                name=None,
            )
        )
    if all(step.optional for step in steps):
        steps[0] = steps[0].model_copy(update={"optional": False})
    names = [f"s{i}" for i in range(len(steps))]
    steps = [step.model_copy(update={"name": name}) for step, name in zip(steps, names, strict=True)]
    definition = JourneyDef(id="j", persona="p", version=1, steps=tuple(steps))
    return compile_journey(definition, CHANNEL_OF)


def _language(journey: Journey, path: list[str]) -> set[tuple[str, ...]]:
    """Every word of the journey's language that can be optimal for this path.

    A repeatable step done more often than the path has events of it only adds deletions, so
    repetitions are bounded by that count (at least 1).
    """
    choices: list[list[tuple[str, ...]]] = []
    for step in journey.steps:
        options: list[tuple[str, ...]] = [()] if step.optional else []
        most = max(1, sum(1 for touchpoint in path if touchpoint in step.touchpoints))
        times = range(1, most + 1) if step.repeatable else range(1, 2)
        for n in times:
            options.extend(itertools.product(sorted(step.touchpoints), repeat=n))
        choices.append(options)
    return {tuple(itertools.chain.from_iterable(parts)) for parts in itertools.product(*choices)}


def _indel_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    @cache
    def lcs(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return 0
        if a[i] == b[j]:
            return 1 + lcs(i + 1, j + 1)
        return max(lcs(i + 1, j), lcs(i, j + 1))

    return len(a) + len(b) - 2 * lcs(0, 0)


def _incremental(journey: Journey, path: list[str]) -> tuple[int, tuple[int, ...]]:
    base, relative = 0, journey.initial_costs
    for touchpoint in path:
        base, relative = journey.advance_cached(base, relative, touchpoint)
    return base, relative


@settings(max_examples=150, deadline=None)
@given(journeys(), st.lists(st.sampled_from(ALPHABET), max_size=5))
def test_cost_equals_brute_force_edit_distance(journey: Journey, path: list[str]) -> None:
    """Unexpected events and missing required steps cost 1 each; the engine finds the true minimum."""
    brute = min(_indel_distance(tuple(path), word) for word in _language(journey, path))
    base, relative = _incremental(journey, path)
    assert base + relative[-1] == brute


@settings(max_examples=200, deadline=None)
@given(journeys(), st.lists(st.sampled_from(ALPHABET), max_size=8))
def test_prefix_costs_never_decrease(journey: Journey, path: list[str]) -> None:
    """The best cost of a prefix never goes down as the path grows."""
    rows = cost_table(journey, path)
    best = [min(row) for row in rows]
    assert best == sorted(best)


@settings(max_examples=200, deadline=None)
@given(journeys(), st.lists(st.sampled_from(ALPHABET), max_size=8), st.booleans())
def test_alignment_moves_account_for_the_cost(journey: Journey, path: list[str], full: bool) -> None:
    """The backtraced alignment costs exactly the optimum, consumes every event once, and its
    deviations add up to the same cost."""
    rows = cost_table(journey, path)
    end = len(journey.steps) if full else None
    moves = align(journey, path, end)
    expected = rows[-1][-1] if full else min(rows[-1])
    assert sum(move.cost for move in moves) == expected
    assert sorted(move.event for move in moves if move.event is not None) == list(range(len(path)))
    events = [
        Occurrence(i * 1000, f"e{i}", touchpoint, CHANNEL_OF[touchpoint], None, None, None, None, None)
        for i, touchpoint in enumerate(path)
    ]
    deviations = deviations_of(journey, events, moves, CHANNEL_OF)
    assert sum(deviation.cost for deviation in deviations) == expected


def _linear(*touchpoints: str, optional: tuple[int, ...] = ()) -> Journey:
    steps = tuple(
        StepDef(name=f"s{i + 1}", touchpoint=tp, optional=i + 1 in optional)
        for i, tp in enumerate(touchpoints)
    )
    return compile_journey(JourneyDef(id="j", persona="p", version=1, steps=steps), CHANNEL_OF)


def _kinds(journey: Journey, path: list[str], full: bool = True) -> list[str]:
    events = [
        Occurrence(i * 1000, f"e{i}", tp, CHANNEL_OF[tp], None, None, None, None, None)
        for i, tp in enumerate(path)
    ]
    moves = align(journey, path, len(journey.steps) if full else None)
    return [deviation.kind.value for deviation in deviations_of(journey, events, moves, CHANNEL_OF)]


def test_swapped_steps_are_one_out_of_order_deviation() -> None:
    """A B C D done as A C B D is reported once, as out_of_order, costing 2."""
    journey = _linear("a.one", "a.two", "b.three", "b.four")
    assert _kinds(journey, ["a.one", "b.three", "a.two", "b.four"]) == [DeviationKind.OUT_OF_ORDER.value]


def test_missing_unexpected_and_repeated_steps_are_named() -> None:
    """Each kind of edit is reported with its own kind."""
    journey = _linear("a.one", "a.two", "b.three")
    assert _kinds(journey, ["a.one", "b.three"]) == ["missing_step"]
    assert _kinds(journey, ["a.one", "c.five", "a.two", "b.three"]) == ["unexpected_step"]
    assert _kinds(journey, ["a.one", "a.two", "a.two", "b.three"]) == ["repeated_step"]


def test_skipped_optional_step_costs_nothing() -> None:
    """Leaving out an optional step is not a deviation."""
    journey = _linear("a.one", "a.two", "b.three", optional=(2,))
    assert _kinds(journey, ["a.one", "b.three"]) == []


def test_earliest_occurrence_matches_and_the_later_one_is_the_repeat() -> None:
    """When a step is done twice, the second occurrence is the repeated one."""
    journey = _linear("a.one", "a.two")
    moves = align(journey, ["a.one", "a.one", "a.two"], 2)
    assert [move.op for move in moves] == [Op.MATCH, Op.INSERT, Op.MATCH]
