"""Optimal alignment of a path against an ideal journey, with the deviation list it implies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from projections.durations import format_duration
from projections.journeys import Journey
from projections.occurrence import Occurrence


class Op(StrEnum):
    """One move of an alignment."""

    MATCH = "match"  # event performs the next step
    REPEAT = "repeat"  # event performs a repeatable step again
    INSERT = "insert"  # event the ideal journey did not expect here (cost 1)
    SKIP = "skip"  # step not performed (cost 1 if required, 0 if optional)


@dataclass(frozen=True, slots=True)
class Move:
    """An alignment move: the step it concerns (0 for an insert before step 1) and the event index."""

    op: Op
    step: int
    event: int | None
    cost: int


def cost_table(journey: Journey, path: Sequence[str]) -> list[tuple[int, ...]]:
    """Row j is the alignment cost vector after the first j path events (same recurrence as advance)."""
    rows = [journey.initial_costs]
    for touchpoint in path:
        rows.append(journey.advance(rows[-1], touchpoint))
    return rows


def align(journey: Journey, path: Sequence[str], end_state: int | None) -> list[Move]:
    """align_uncached() memoised per journey: the moves depend only on the path and the end state,
    and real traffic repeats a few thousand distinct paths."""
    key = (tuple(path), end_state)
    cached = journey.alignments.get(key)
    if cached is None:
        if len(journey.alignments) > 100_000:
            journey.alignments.clear()  # bound memory; correctness is unaffected
        cached = journey.alignments[key] = tuple(align_uncached(journey, path, end_state))
    return list(cached)


def align_uncached(journey: Journey, path: Sequence[str], end_state: int | None) -> list[Move]:
    """An optimal alignment ending in end_state (None: the cheapest state, for unfinished paths).

    Ties are broken deterministically (insert, match, repeat, skip, scanning from the end, so
    the earliest occurrence of a step is the one that matches), so the
    same path always yields the same deviation list.
    """
    rows = cost_table(journey, path)
    last = rows[-1]
    if end_state is None:
        # The cheapest state; among equals the furthest along, so a skipped step before the
        # last event reads as missing rather than the last event as premature.
        best = min(last)
        end_state = max(i for i, cost in enumerate(last) if cost == best)
    state = end_state
    moves: list[Move] = []
    j = len(path)
    steps = journey.steps
    skip = journey.skip_cost
    while j > 0 or state > 0:
        here = rows[j][state]
        if j > 0:
            touchpoint = path[j - 1]
            previous = rows[j - 1]
            in_step = state > 0 and touchpoint in steps[state - 1].touchpoints
            # Inserting the later event first keeps the earliest occurrence as the match.
            if previous[state] + 1 == here:
                moves.append(Move(Op.INSERT, state, j - 1, 1))
                j -= 1
                continue
            if in_step and previous[state - 1] == here:
                moves.append(Move(Op.MATCH, state, j - 1, 0))
                j, state = j - 1, state - 1
                continue
            if in_step and steps[state - 1].repeatable and previous[state] == here:
                moves.append(Move(Op.REPEAT, state, j - 1, 0))
                j -= 1
                continue
        # Only a skip can explain the value now: it is within the same row.
        moves.append(Move(Op.SKIP, state, None, skip[state]))
        state -= 1
    moves.reverse()
    return moves


class DeviationKind(StrEnum):
    """The ways a path differs from its ideal journey."""

    MISSING_STEP = "missing_step"
    UNEXPECTED_STEP = "unexpected_step"
    OUT_OF_ORDER = "out_of_order"
    REPEATED_STEP = "repeated_step"
    CHANNEL_SWITCH = "channel_switch"
    TIME_BUDGET_EXCEEDED = "time_budget_exceeded"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Deviation:
    """One deviation with its lineage: the step, touchpoint and events that caused it."""

    kind: DeviationKind
    step: str
    touchpoint: str
    channel: str
    ts: int
    event_ids: tuple[str, ...]
    detail: str
    cost: int


def deviations_of(
    journey: Journey,
    events: Sequence[Occurrence],
    moves: Sequence[Move],
    channel_of: dict[str, str],
) -> list[Deviation]:
    """Classify an alignment's moves into deviations, in path order.

    A required step skipped while an event of that step was inserted elsewhere is one
    out_of_order deviation (the pair of edits), not a missing step plus an unexpected step.
    """
    steps = journey.steps
    matched_steps: set[int] = set()
    skipped_required: set[int] = set()
    skipped_optional: set[int] = set()
    for move in moves:
        if move.op is Op.SKIP:
            (skipped_required if move.cost else skipped_optional).add(move.step)
        elif move.op is not Op.INSERT:
            matched_steps.add(move.step)
    paired: set[int] = set()  # skipped required steps explained by an out-of-order event
    out: list[tuple[int, int, Deviation]] = []
    last_match_ts: int | None = None
    for order, move in enumerate(moves):
        if move.event is None:
            continue
        event = events[move.event]
        if move.op is Op.INSERT:
            candidates = journey.step_of.get(event.touchpoint, ())
            kind = DeviationKind.UNEXPECTED_STEP
            cost = 1
            step_name = ""
            detail = "touchpoint is not part of this journey"
            for index in candidates:
                if index in skipped_required and index not in paired:
                    paired.add(index)
                    kind, step_name = DeviationKind.OUT_OF_ORDER, steps[index - 1].name
                    detail = f"step {index} '{step_name}' happened out of sequence"
                    cost = 2  # the skipped step and the misplaced event, reported once
                    break
            else:
                for index in candidates:
                    if index in matched_steps:
                        kind, step_name = DeviationKind.REPEATED_STEP, steps[index - 1].name
                        detail = f"step {index} '{step_name}' was already done"
                        break
                else:
                    for index in candidates:
                        if index in skipped_optional:
                            kind, step_name = DeviationKind.OUT_OF_ORDER, steps[index - 1].name
                            detail = f"optional step {index} '{step_name}' out of sequence"
                            break
                    else:
                        if candidates:
                            # A step beyond where the path got to: done ahead of its turn.
                            kind = DeviationKind.OUT_OF_ORDER
                            step_name = steps[candidates[0] - 1].name
                            detail = f"step '{step_name}' done ahead of the steps before it"
            out.append(
                (event.ts, order, Deviation(kind, step_name, event.touchpoint, event.channel,
                 event.ts, (event.event_id,), detail, cost))
            )  # fmt: skip
            continue
        step = steps[move.step - 1]
        if move.op is Op.MATCH:
            if event.channel != step.primary_channel:
                out.append(
                    (event.ts, order, Deviation(
                        DeviationKind.CHANNEL_SWITCH, step.name, event.touchpoint, event.channel,
                        event.ts, (event.event_id,),
                        f"done on {event.channel} instead of {step.primary_channel}", 0))
                )  # fmt: skip
            if (
                step.within_ms is not None
                and last_match_ts is not None
                and event.ts - last_match_ts > step.within_ms
            ):
                late_by = event.ts - last_match_ts - step.within_ms
                out.append(
                    (event.ts, order, Deviation(
                        DeviationKind.TIME_BUDGET_EXCEEDED, step.name, event.touchpoint,
                        event.channel, event.ts, (event.event_id,),
                        f"took {format_duration(event.ts - last_match_ts)}, budget "
                        f"{format_duration(step.within_ms)} (over by {format_duration(late_by)})", 0))
                )  # fmt: skip
            last_match_ts = event.ts
        elif move.op is Op.REPEAT:
            last_match_ts = event.ts
    # Missing steps not explained by an out-of-order event; placed at the next event's time.
    for order, move in enumerate(moves):
        if move.op is Op.SKIP and move.cost > 0 and move.step not in paired:
            step = steps[move.step - 1]
            following = next((m.event for m in moves[order:] if m.event is not None), None)
            anchor = events[following] if following is not None else (events[-1] if events else None)
            ts = anchor.ts if anchor is not None else 0
            lineage = (anchor.event_id,) if anchor is not None else ()
            out.append(
                (ts, order, Deviation(
                    DeviationKind.MISSING_STEP, step.name, step.primary,
                    channel_of.get(step.primary, ""), ts, lineage,
                    f"required step {move.step} '{step.name}' was not done", 1))
            )  # fmt: skip
    out.sort(key=lambda item: (item[0], item[1]))
    return [deviation for _, _, deviation in out]
