"""Named builders of the hot projection rows: every column by name, returned in insert order."""

from __future__ import annotations

Row = tuple[object, ...]  # one projection row, in its table's insert order

# Each builder's keyword names are its table's columns in insert order (a unit test holds them to
# projections/schema.py), so a row can be read and changed by name while staying a plain tuple: the
# engine writes a few of these per event, and a tuple is what the store and the native core compare.


def touchpoint_event_row(
    *,
    scenario: str,
    event_id: str,
    customer_id: str,
    occurred_at: int,
    channel: str,
    touchpoint: str,
    owner_team: str,
    persona: str | None,
    outcome: str | None,
    employee_id: str | None,
    survey_kind: str | None,
    survey_score: int | None,
    survey_comment: str | None,
    attributes: str,
    source: str | None,
) -> Row:
    """A touchpoint_events row."""
    return (
        scenario,
        event_id,
        customer_id,
        occurred_at,
        channel,
        touchpoint,
        owner_team,
        persona,
        outcome,
        employee_id,
        survey_kind,
        survey_score,
        survey_comment,
        attributes,
        source,
    )


def journey_instance_row(
    *,
    scenario: str,
    instance_id: str,
    customer_id: str,
    persona: str,
    journey_id: str,
    journey_version: int,
    status: str,
    end_reason: str | None,
    path: list[str],
    path_event_ids: list[str],
    events: int,
    cost: int,
    fitness: float,
    deviation_count: int,
    started_at: int,
    last_event_at: int,
    ended_at: int | None,
    version: int,
    is_deleted: int,
) -> Row:
    """A journey_instances row."""
    return (
        scenario,
        instance_id,
        customer_id,
        persona,
        journey_id,
        journey_version,
        status,
        end_reason,
        path,
        path_event_ids,
        events,
        cost,
        fitness,
        deviation_count,
        started_at,
        last_event_at,
        ended_at,
        version,
        is_deleted,
    )


def deviation_row(
    *,
    scenario: str,
    instance_id: str,
    idx: int,
    customer_id: str,
    persona: str,
    journey_id: str,
    journey_version: int,
    kind: str,
    step: str,
    touchpoint: str,
    channel: str,
    owner_team: str,
    occurred_at: int,
    event_ids: list[str],
    detail: str,
    cost: int,
    version: int,
    is_deleted: int,
) -> Row:
    """A deviations row."""
    return (
        scenario,
        instance_id,
        idx,
        customer_id,
        persona,
        journey_id,
        journey_version,
        kind,
        step,
        touchpoint,
        channel,
        owner_team,
        occurred_at,
        event_ids,
        detail,
        cost,
        version,
        is_deleted,
    )


def friction_signal_row(
    *,
    scenario: str,
    instance_id: str,
    idx: int,
    signal_id: str,
    customer_id: str,
    persona: str,
    journey_id: str,
    journey_version: int,
    touchpoint: str,
    owner_team: str,
    kind: str,
    weight: float,
    occurred_at: int,
    event_ids: list[str],
    version: int,
    is_deleted: int,
) -> Row:
    """A friction_signals row."""
    return (
        scenario,
        instance_id,
        idx,
        signal_id,
        customer_id,
        persona,
        journey_id,
        journey_version,
        touchpoint,
        owner_team,
        kind,
        weight,
        occurred_at,
        event_ids,
        version,
        is_deleted,
    )


def delight_signal_row(
    *,
    scenario: str,
    instance_id: str,
    idx: int,
    customer_id: str,
    persona: str,
    touchpoint: str,
    owner_team: str,
    employee_id: str | None,
    survey_kind: str | None,
    score: int | None,
    occurred_at: int,
    event_ids: list[str],
    version: int,
    is_deleted: int,
) -> Row:
    """A delight_signals row."""
    return (
        scenario,
        instance_id,
        idx,
        customer_id,
        persona,
        touchpoint,
        owner_team,
        employee_id,
        survey_kind,
        score,
        occurred_at,
        event_ids,
        version,
        is_deleted,
    )


def support_attribution_row(
    *,
    scenario: str,
    support_event_id: str,
    instance_id: str,
    customer_id: str,
    persona: str,
    support_touchpoint: str,
    upstream_touchpoint: str | None,
    upstream_owner_team: str | None,
    upstream_event_id: str | None,
    rule: str,
    occurred_at: int,
    version: int,
    is_deleted: int,
) -> Row:
    """A support_attribution row."""
    return (
        scenario,
        support_event_id,
        instance_id,
        customer_id,
        persona,
        support_touchpoint,
        upstream_touchpoint,
        upstream_owner_team,
        upstream_event_id,
        rule,
        occurred_at,
        version,
        is_deleted,
    )
