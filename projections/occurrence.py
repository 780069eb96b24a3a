"""The engine's compact record of one accepted event, in event-time order (ts, event_id)."""

from __future__ import annotations

from typing import NamedTuple

from events.model import TouchpointEvent


class Occurrence(NamedTuple):
    """What the journey engine keeps of an event; ordered by (ts, event_id) like the path."""

    ts: int
    event_id: str
    touchpoint: str
    channel: str
    outcome: str | None
    persona: str | None
    employee_id: str | None
    survey_kind: str | None
    survey_score: int | None


def occurrence_of(event: TouchpointEvent, ts: int | None = None) -> Occurrence:
    """The engine record of a validated event (ts: its occurred_ms, when already computed)."""
    survey = event.survey
    return Occurrence(
        event.occurred_ms if ts is None else ts,
        event.event_id,
        event.touchpoint,
        event.channel,
        event.outcome.value if event.outcome is not None else None,
        event.persona,
        event.employee_id,
        survey.kind.value if survey is not None else None,
        survey.score if survey is not None else None,
    )
