"""What a journey's ideal path allows: touchpoints back to back, and the touchpoints it may end with."""

from __future__ import annotations

from projections.journeys import Journey


def ideal_transitions(journey: Journey) -> set[tuple[str, str]]:
    """Touchpoint pairs the ideal journey allows back to back (skipping optional steps, repeating)."""
    pairs: set[tuple[str, str]] = set()
    steps = journey.steps
    for i, step in enumerate(steps):
        if step.repeatable:
            pairs |= {(a, b) for a in step.touchpoints for b in step.touchpoints}
        for later in steps[i + 1 :]:
            pairs |= {(a, b) for a in step.touchpoints for b in later.touchpoints}
            if not later.optional:
                break
    return pairs


def ideal_ends(journey: Journey) -> set[str]:
    """Touchpoints an ideal path may end with: the last required step and any optional steps after it."""
    ends: set[str] = set()
    for step in reversed(journey.steps):
        ends |= step.touchpoints
        if not step.optional:
            break
    return ends
