"""Friction, delight and support-contact attribution derived from one journey instance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from projections.alignment import Deviation, DeviationKind
from projections.journeys import FrictionSettings
from projections.occurrence import Occurrence

SUPPORT_CHANNEL = "support"


class FrictionKind(StrEnum):
    """Evidence that a touchpoint hurt the customer."""

    FAILURE = "failure"  # the interaction failed
    REPEAT = "repeat"  # the same touchpoint again within the repeat window
    STALL = "stall"  # the step took longer than its time budget
    ESCALATION = "escalation"  # a support contact attributed to this touchpoint
    NEGATIVE_SURVEY = "negative_survey"  # a poor survey score soon after this touchpoint
    ABANDONMENT = "abandonment"  # the journey was abandoned right after this touchpoint


FRICTION_WEIGHT = {
    FrictionKind.FAILURE: 1.0,
    FrictionKind.REPEAT: 0.5,
    FrictionKind.STALL: 1.0,
    FrictionKind.ESCALATION: 1.0,
    FrictionKind.NEGATIVE_SURVEY: 1.0,
    FrictionKind.ABANDONMENT: 1.0,
}


class AttributionRule(StrEnum):
    """Which rule picked the upstream touchpoint of a support contact."""

    FAILURE_IN_LOOKBACK = "failure_in_lookback"
    DEVIATION_IN_LOOKBACK = "deviation_in_lookback"
    LAST_TOUCHPOINT = "last_touchpoint"
    NO_UPSTREAM = "no_upstream"


@dataclass(frozen=True, slots=True)
class FrictionSignal:
    """One friction signal at a touchpoint, with the events that show it."""

    kind: FrictionKind
    touchpoint: str
    weight: float
    ts: int
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DelightSignal:
    """A positive survey attributed to the touchpoint (and associate) just before it."""

    touchpoint: str
    employee_id: str | None
    survey_kind: str
    score: int
    ts: int
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SupportAttribution:
    """A support contact and the upstream touchpoint that most likely caused it."""

    support: Occurrence
    upstream: Occurrence | None
    rule: AttributionRule


def survey_sentiment(kind: str, score: int) -> int:
    """-1 for a poor score (CSAT<=2, NPS<=6, CES>=5), +1 for a good one (CSAT>=4, NPS>=9,
    CES<=2), 0 otherwise."""
    if kind == "csat":
        return -1 if score <= 2 else (1 if score >= 4 else 0)
    if kind == "nps":
        return -1 if score <= 6 else (1 if score >= 9 else 0)
    return -1 if score >= 5 else (1 if score <= 2 else 0)


def attribute_support(
    events: Sequence[Occurrence], deviating: set[str], settings: FrictionSettings
) -> list[SupportAttribution]:
    """Attribute each support contact to the most recent failing or deviating touchpoint in the
    look-back window, else to the last touchpoint before it."""
    out: list[SupportAttribution] = []
    for position, event in enumerate(events):
        if event.channel != SUPPORT_CHANNEL:
            continue
        window = [
            earlier
            for earlier in events[:position]
            if earlier.channel != SUPPORT_CHANNEL
            and earlier.survey_kind is None
            and event.ts - earlier.ts <= settings.escalation_lookback
        ]
        chosen: Occurrence | None = None
        rule = AttributionRule.NO_UPSTREAM
        for earlier in reversed(window):
            if earlier.outcome == "failure":
                chosen, rule = earlier, AttributionRule.FAILURE_IN_LOOKBACK
                break
            if earlier.event_id in deviating:
                chosen, rule = earlier, AttributionRule.DEVIATION_IN_LOOKBACK
                break
        if chosen is None and window:
            chosen, rule = window[-1], AttributionRule.LAST_TOUCHPOINT
        out.append(SupportAttribution(event, chosen, rule))
    return out


def friction_of(
    events: Sequence[Occurrence],
    deviations: Sequence[Deviation],
    attributions: Sequence[SupportAttribution],
    abandoned: bool,
    settings: FrictionSettings,
) -> list[FrictionSignal]:
    """Every friction signal of one instance, in a deterministic order."""
    out: list[FrictionSignal] = []
    previous: Occurrence | None = None
    for position, event in enumerate(events):
        if event.outcome == "failure":
            out.append(_signal(FrictionKind.FAILURE, event.touchpoint, event.ts, event.event_id))
        if (
            previous is not None
            and previous.touchpoint == event.touchpoint
            and event.ts - previous.ts <= settings.repeat_window
        ):
            out.append(
                _signal(FrictionKind.REPEAT, event.touchpoint, event.ts,
                        previous.event_id, event.event_id)
            )  # fmt: skip
        if (
            event.survey_kind is not None
            and event.survey_score is not None
            and survey_sentiment(event.survey_kind, event.survey_score) < 0
        ):
            out.extend(_negative_survey(events, position, settings))
        previous = event
    out.extend(
        _signal(FrictionKind.STALL, deviation.touchpoint, deviation.ts, *deviation.event_ids)
        for deviation in deviations
        if deviation.kind is DeviationKind.TIME_BUDGET_EXCEEDED
    )
    out.extend(
        _signal(FrictionKind.ESCALATION, item.upstream.touchpoint, item.support.ts,
                item.upstream.event_id, item.support.event_id)
        for item in attributions
        if item.upstream is not None
    )  # fmt: skip
    if abandoned and events:
        # The journey stopped after this touchpoint; a closing support contact or survey is a
        # symptom, so the blame goes to the last touchpoint before them when there is one.
        last = next(
            (e for e in reversed(events) if e.channel != SUPPORT_CHANNEL and e.survey_kind is None),
            events[-1],
        )
        out.append(_signal(FrictionKind.ABANDONMENT, last.touchpoint, last.ts, last.event_id))
    return out


def _signal(kind: FrictionKind, touchpoint: str, ts: int, *event_ids: str) -> FrictionSignal:
    return FrictionSignal(kind, touchpoint, FRICTION_WEIGHT[kind], ts, event_ids)


def _negative_survey(
    events: Sequence[Occurrence], position: int, settings: FrictionSettings
) -> list[FrictionSignal]:
    survey = events[position]
    before: dict[str, Occurrence] = {}
    for earlier in events[:position]:
        if earlier.survey_kind is None and survey.ts - earlier.ts <= settings.survey_lookback:
            before[earlier.touchpoint] = earlier  # the latest occurrence of each touchpoint
    if not before:
        return []
    share = 1.0 / len(before)
    return [
        FrictionSignal(FrictionKind.NEGATIVE_SURVEY, touchpoint, share, survey.ts,
                       (earlier.event_id, survey.event_id))
        for touchpoint, earlier in sorted(before.items())
    ]  # fmt: skip


def delight_of(events: Sequence[Occurrence], settings: FrictionSettings) -> list[DelightSignal]:
    """Positive surveys, attributed to the last touchpoint before them and its associate."""
    out: list[DelightSignal] = []
    for position, event in enumerate(events):
        if event.survey_kind is None or event.survey_score is None:
            continue
        if survey_sentiment(event.survey_kind, event.survey_score) <= 0:
            continue
        earlier = next(
            (
                candidate
                for candidate in reversed(events[:position])
                if candidate.survey_kind is None and event.ts - candidate.ts <= settings.survey_lookback
            ),
            None,
        )
        target = earlier if earlier is not None else event
        employee = event.employee_id or (earlier.employee_id if earlier is not None else None)
        ids = (target.event_id, event.event_id) if earlier is not None else (event.event_id,)
        out.append(
            DelightSignal(target.touchpoint, employee, event.survey_kind, event.survey_score,
                          event.ts, ids)
        )  # fmt: skip
    return out
