"""Projection rows in (the detector's observations), alert rows out (the `alerts` table)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from projections import schema
from projections.alerts.config import DetectorConfig
from projections.alerts.model import AlertEvent, Observation, ObservationKind, observation_order

_EVENT_COLUMNS = {name: i for i, name in enumerate(schema.TOUCHPOINT_EVENTS.column_names)}
_FRICTION_COLUMNS = {name: i for i, name in enumerate(schema.FRICTION_SIGNALS.column_names)}
_SUPPORT_COLUMNS = {name: i for i, name in enumerate(schema.SUPPORT_ATTRIBUTION.column_names)}


def observations_of(rows: Mapping[str, Sequence[Sequence[Any]]], config: DetectorConfig) -> list[Observation]:
    """The detector's inputs in a batch of projection rows (a RowBatch's `rows`, or the `rows` of a
    journey_update message): accepted events, live friction signals of the counted kinds, and
    support contacts. Tombstones are skipped: a retracted signal is not subtracted."""
    out: list[Observation] = []
    ev = _EVENT_COLUMNS
    for row in rows.get(schema.TOUCHPOINT_EVENTS.name, ()):
        out.append(
            Observation(
                ObservationKind.TRAFFIC, str(row[ev["touchpoint"]]), int(row[ev["occurred_at"]]),
                str(row[ev["event_id"]]), str(row[ev["customer_id"]]),
                _opt(row[ev["persona"]]), event_ids=(str(row[ev["event_id"]]),),
            )
        )  # fmt: skip
    kinds = config.kinds
    fr = _FRICTION_COLUMNS
    for row in rows.get(schema.FRICTION_SIGNALS.name, ()):
        if row[fr["is_deleted"]] or row[fr["kind"]] not in kinds:
            continue
        out.append(
            Observation(
                ObservationKind.FRICTION, str(row[fr["touchpoint"]]), int(row[fr["occurred_at"]]),
                str(row[fr["signal_id"]]), str(row[fr["customer_id"]]), _opt(row[fr["persona"]]),
                f"{row[fr['journey_id']]}@{row[fr['journey_version']]}", str(row[fr["kind"]]),
                event_ids=tuple(str(event_id) for event_id in row[fr["event_ids"]]),
            )
        )  # fmt: skip
    su = _SUPPORT_COLUMNS
    for row in rows.get(schema.SUPPORT_ATTRIBUTION.name, ()):
        if row[su["is_deleted"]]:
            continue
        upstream = _opt(row[su["upstream_touchpoint"]])
        ids = [str(row[su["support_event_id"]])]
        if row[su["upstream_event_id"]] is not None:
            ids.append(str(row[su["upstream_event_id"]]))
        out.append(
            Observation(
                ObservationKind.CONTACT, str(row[su["support_touchpoint"]]), int(row[su["occurred_at"]]),
                str(row[su["support_event_id"]]), str(row[su["customer_id"]]), _opt(row[su["persona"]]),
                upstream=upstream, event_ids=tuple(ids),
            )
        )  # fmt: skip
    out.sort(key=observation_order)
    return out


def alert_row(alert: AlertEvent, scenario: str) -> tuple[object, ...]:
    """The alert as a row of the `alerts` table."""
    return (
        scenario, alert.alert_id, alert.incident_id, alert.action.value, alert.touchpoint,
        alert.owner_team, alert.measure, alert.trigger, alert.window_start, alert.window_end,
        alert.incident_start,
        alert.detected_at, alert.traffic, alert.signals, _finite(alert.rate), _finite(alert.baseline_rate),
        _finite(alert.expected), _finite(alert.ratio), _finite(alert.sigma), dict(alert.kinds),
        dict(alert.personas), dict(alert.journeys), dict(alert.upstream), list(alert.customer_ids),
        list(alert.event_ids), alert.summary(),
    )  # fmt: skip


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
