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
Columns = Mapping[str, Sequence[Any]]  # a table's values column by column, by column name


def observations_of(rows: Mapping[str, Sequence[Sequence[Any]]], config: DetectorConfig) -> list[Observation]:
    """The detector's inputs in a batch of projection rows (a RowBatch's `rows`, or the `rows` of a
    journey_update message): accepted events, live friction signals of the counted kinds, and
    support contacts. Tombstones are skipped: a retracted signal is not subtracted."""
    columns: dict[str, Columns] = {}
    for table in OBSERVED_TABLES:
        table_rows = rows.get(table.name, ())
        values = list(zip(*table_rows, strict=True)) if table_rows else []
        columns[table.name] = {
            name: values[i]
            for i, name in enumerate(table.column_names)
            if values and name in OBSERVED_COLUMNS
        }
    return observations_of_columns(columns, config)


def observations_of_columns(
    columns: Mapping[str, Columns], config: DetectorConfig, *, ruled_only: bool = False
) -> list[Observation]:
    """observations_of on column-wise tables ({table: {column: values}}, the OBSERVED_COLUMNS at
    least), sorted by observation_order; `ruled_only` leaves out touchpoints without an alert rule
    (FrictionDetector.observe_all skips them)."""
    rules = config.rules
    out: list[Observation] = []
    traffic, friction, contact = ObservationKind.TRAFFIC, ObservationKind.FRICTION, ObservationKind.CONTACT
    ev = columns.get(schema.TOUCHPOINT_EVENTS.name)
    if ev:
        for touchpoint, ts, event_id, customer, persona in zip(
            map(str, ev["touchpoint"]), ev["occurred_at"], map(str, ev["event_id"]),
            map(str, ev["customer_id"]), ev["persona"], strict=True,
        ):  # fmt: skip
            if ruled_only and touchpoint not in rules:
                continue
            out.append(
                Observation(
                    traffic, touchpoint, int(ts), event_id, customer, _opt(persona), event_ids=(event_id,)
                )
            )
    kinds = config.kinds
    fr = columns.get(schema.FRICTION_SIGNALS.name)
    if fr:
        for deleted, kind, touchpoint, ts, signal_id, customer, persona, journey, version, ids in zip(
            fr["is_deleted"], fr["kind"], fr["touchpoint"], fr["occurred_at"], fr["signal_id"],
            fr["customer_id"], fr["persona"], fr["journey_id"], fr["journey_version"], fr["event_ids"],
            strict=True,
        ):  # fmt: skip
            if deleted or kind not in kinds or (ruled_only and str(touchpoint) not in rules):
                continue
            out.append(
                Observation(
                    friction, str(touchpoint), int(ts), str(signal_id), str(customer), _opt(persona),
                    f"{journey}@{version}", str(kind), event_ids=tuple(str(event_id) for event_id in ids),
                )
            )  # fmt: skip
    su = columns.get(schema.SUPPORT_ATTRIBUTION.name)
    if su:
        for deleted, touchpoint, ts, raw_id, customer, persona, upstream, upstream_id in zip(
            su["is_deleted"], su["support_touchpoint"], su["occurred_at"], su["support_event_id"],
            su["customer_id"], su["persona"], su["upstream_touchpoint"], su["upstream_event_id"],
            strict=True,
        ):  # fmt: skip
            if deleted or (ruled_only and str(touchpoint) not in rules):
                continue
            support_id = str(raw_id)
            ids = (support_id,) if upstream_id is None else (support_id, str(upstream_id))
            out.append(
                Observation(
                    contact, str(touchpoint), int(ts), support_id, str(customer), _opt(persona),
                    upstream=_opt(upstream), event_ids=ids,
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
