"""Projection rows in (the detector's observations), alert rows out (the `alerts` table)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from projections import schema
from projections.alerts.config import DetectorConfig
from projections.alerts.model import AlertEvent, Observation, ObservationKind, observation_order

# The tables observations_of reads, and the columns it reads of them.
OBSERVED_TABLES = (schema.TOUCHPOINT_EVENTS, schema.FRICTION_SIGNALS, schema.SUPPORT_ATTRIBUTION)
OBSERVED_COLUMNS = frozenset(
    ("touchpoint", "occurred_at", "event_id", "customer_id", "persona", "is_deleted", "kind",
     "signal_id", "journey_id", "journey_version", "event_ids", "upstream_touchpoint",
     "support_event_id", "upstream_event_id", "support_touchpoint")
)  # fmt: skip
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
    return schema.ALERTS.row(
        scenario=scenario,
        alert_id=alert.alert_id,
        incident_id=alert.incident_id,
        action=alert.action.value,
        touchpoint=alert.touchpoint,
        owner_team=alert.owner_team,
        measure=alert.measure,
        trigger=alert.trigger,
        window_start=alert.window_start,
        window_end=alert.window_end,
        incident_start=alert.incident_start,
        detected_at=alert.detected_at,
        traffic=alert.traffic,
        signals=alert.signals,
        rate=_finite(alert.rate),
        baseline_rate=_finite(alert.baseline_rate),
        expected=_finite(alert.expected),
        ratio=_finite(alert.ratio),
        sigma=_finite(alert.sigma),
        kinds=dict(alert.kinds),
        personas=dict(alert.personas),
        journeys=dict(alert.journeys),
        upstream=dict(alert.upstream),
        example_customer_ids=list(alert.customer_ids),
        example_event_ids=list(alert.event_ids),
        summary=alert.summary(),
    )


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
