"""The projection tables as data: columns, types and keys, shared by every storage adapter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Table:
    """One projection table: ordered columns, the sort/dedup key and whether rows carry versions."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    versioned: bool  # ReplacingMergeTree(version, is_deleted) rather than plain ReplacingMergeTree
    partition_by: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in insert order."""
        return tuple(name for name, _ in self.columns)

    def row(self, **values: object) -> tuple[object, ...]:
        """A row built by column name, in insert order: every column given, and no other.

        For rows written now and then (alerts); the hot projection rows stay positional."""
        if values.keys() != set(self.column_names):
            missing = sorted(set(self.column_names) - values.keys())
            unknown = sorted(values.keys() - set(self.column_names))
            msg = f"a {self.name} row needs exactly its columns: missing {missing}, unknown {unknown}"
            raise ValueError(msg)
        return tuple(values[name] for name in self.column_names)


TS = "DateTime64(3, 'UTC')"
VERSION = (("version", "UInt64"), ("is_deleted", "UInt8"))

TOUCHPOINT_EVENTS = Table(
    "touchpoint_events",
    (
        ("scenario", "LowCardinality(String)"),
        ("event_id", "String"),
        ("customer_id", "String"),
        ("occurred_at", TS),
        ("channel", "LowCardinality(String)"),
        ("touchpoint", "LowCardinality(String)"),
        ("owner_team", "LowCardinality(String)"),
        ("persona", "Nullable(String)"),
        ("outcome", "LowCardinality(Nullable(String))"),
        ("employee_id", "Nullable(String)"),
        ("survey_kind", "LowCardinality(Nullable(String))"),
        ("survey_score", "Nullable(Int16)"),
        ("survey_comment", "Nullable(String)"),
        ("attributes", "String"),
        ("source", "Nullable(String)"),
    ),
    ("scenario", "customer_id", "event_id"),
    versioned=False,
    partition_by="toYYYYMM(occurred_at)",
)

JOURNEY_INSTANCES = Table(
    "journey_instances",
    (
        ("scenario", "LowCardinality(String)"),
        ("instance_id", "String"),
        ("customer_id", "String"),
        ("persona", "LowCardinality(String)"),
        ("journey_id", "LowCardinality(String)"),
        ("journey_version", "UInt32"),
        ("status", "LowCardinality(String)"),
        ("end_reason", "LowCardinality(Nullable(String))"),
        ("path", "Array(LowCardinality(String))"),
        ("path_event_ids", "Array(String)"),
        ("events", "UInt32"),
        ("cost", "UInt32"),
        ("fitness", "Float64"),
        ("deviation_count", "UInt32"),
        ("started_at", TS),
        ("last_event_at", TS),
        ("ended_at", f"Nullable({TS})"),
        *VERSION,
    ),
    ("scenario", "customer_id", "instance_id"),
    versioned=True,
)

DEVIATIONS = Table(
    "deviations",
    (
        ("scenario", "LowCardinality(String)"),
        ("instance_id", "String"),
        ("idx", "UInt16"),
        ("customer_id", "String"),
        ("persona", "LowCardinality(String)"),
        ("journey_id", "LowCardinality(String)"),
        ("journey_version", "UInt32"),
        ("kind", "LowCardinality(String)"),
        ("step", "LowCardinality(String)"),
        ("touchpoint", "LowCardinality(String)"),
        ("channel", "LowCardinality(String)"),
        ("owner_team", "LowCardinality(String)"),
        ("occurred_at", TS),
        ("event_ids", "Array(String)"),
        ("detail", "String"),
        ("cost", "UInt8"),
        *VERSION,
    ),
    ("scenario", "customer_id", "instance_id", "idx"),
    versioned=True,
)

FRICTION_SIGNALS = Table(
    "friction_signals",
    (
        ("scenario", "LowCardinality(String)"),
        ("instance_id", "String"),
        ("idx", "UInt16"),
        ("signal_id", "String"),
        ("customer_id", "String"),
        ("persona", "LowCardinality(String)"),
        ("journey_id", "LowCardinality(String)"),
        ("journey_version", "UInt32"),
        ("touchpoint", "LowCardinality(String)"),
        ("owner_team", "LowCardinality(String)"),
        ("kind", "LowCardinality(String)"),
        ("weight", "Float64"),
        ("occurred_at", TS),
        ("event_ids", "Array(String)"),
        *VERSION,
    ),
    ("scenario", "customer_id", "instance_id", "idx"),
    versioned=True,
)

DELIGHT_SIGNALS = Table(
    "delight_signals",
    (
        ("scenario", "LowCardinality(String)"),
        ("instance_id", "String"),
        ("idx", "UInt16"),
        ("customer_id", "String"),
        ("persona", "LowCardinality(String)"),
        ("touchpoint", "LowCardinality(String)"),
        ("owner_team", "LowCardinality(String)"),
        ("employee_id", "Nullable(String)"),
        ("survey_kind", "LowCardinality(String)"),
        ("score", "Int16"),
        ("occurred_at", TS),
        ("event_ids", "Array(String)"),
        *VERSION,
    ),
    ("scenario", "customer_id", "instance_id", "idx"),
    versioned=True,
)

SUPPORT_ATTRIBUTION = Table(
    "support_attribution",
    (
        ("scenario", "LowCardinality(String)"),
        ("support_event_id", "String"),
        ("instance_id", "String"),
        ("customer_id", "String"),
        ("persona", "LowCardinality(String)"),
        ("support_touchpoint", "LowCardinality(String)"),
        ("upstream_touchpoint", "LowCardinality(Nullable(String))"),
        ("upstream_owner_team", "LowCardinality(Nullable(String))"),
        ("upstream_event_id", "Nullable(String)"),
        ("rule", "LowCardinality(String)"),
        ("occurred_at", TS),
        *VERSION,
    ),
    ("scenario", "customer_id", "support_event_id"),
    versioned=True,
)

BAD_EVENTS = Table(
    "bad_events",
    (
        ("scenario", "LowCardinality(String)"),
        ("source", "String"),
        ("position", "UInt64"),
        ("reason", "LowCardinality(String)"),
        ("field", "Nullable(String)"),
        ("detail", "String"),
        ("raw", "String"),
    ),
    ("scenario", "source", "position"),
    versioned=False,
)

ALERTS = Table(
    "alerts",
    (
        ("scenario", "LowCardinality(String)"),
        ("alert_id", "String"),
        ("incident_id", "String"),
        ("action", "LowCardinality(String)"),
        ("touchpoint", "LowCardinality(String)"),
        ("owner_team", "LowCardinality(String)"),
        ("measure", "LowCardinality(String)"),
        ("trigger", "LowCardinality(String)"),
        ("window_start", TS),
        ("window_end", TS),
        ("incident_start", TS),
        ("detected_at", TS),
        ("traffic", "UInt64"),
        ("signals", "UInt64"),
        ("rate", "Float64"),
        ("baseline_rate", "Float64"),
        ("expected", "Float64"),
        ("ratio", "Float64"),
        ("sigma", "Float64"),
        ("kinds", "Map(String, UInt32)"),
        ("personas", "Map(String, UInt32)"),
        ("journeys", "Map(String, UInt32)"),
        ("upstream", "Map(String, UInt32)"),
        ("example_customer_ids", "Array(String)"),
        ("example_event_ids", "Array(String)"),
        ("summary", "String"),
    ),
    ("scenario", "touchpoint", "alert_id"),
    versioned=False,  # an alert id always carries the same alert: replays replace it with itself
)

ALERT_DELIVERIES = Table(
    "alert_deliveries",
    (
        ("scenario", "LowCardinality(String)"),
        ("alert_id", "String"),
        ("team", "LowCardinality(String)"),
        ("destination_id", "String"),
        ("destination", "String"),
        ("attempt", "UInt16"),
        ("attempted_at", TS),
        ("outcome", "LowCardinality(String)"),
        ("status_code", "Nullable(UInt16)"),
        ("error", "String"),
    ),
    ("scenario", "alert_id", "destination_id", "attempted_at", "attempt"),
    versioned=False,
)

JOURNEY_STATE = Table(
    "journey_state",
    (
        ("scenario", "LowCardinality(String)"),
        ("customer_id", "String"),
        ("state", "String"),  # projections.state_codec bytes: what the engine needs to go on
        *VERSION,
    ),
    ("scenario", "customer_id"),
    versioned=True,
)

ALERT_STATE = Table(
    "alert_state",
    (
        ("scenario", "LowCardinality(String)"),
        ("touchpoint", "LowCardinality(String)"),
        ("settings_id", "String"),  # a hash of the alert settings the state was built with
        ("state", "String"),  # alerts.codec.encode_detector bytes: what the detector needs
        *VERSION,
    ),
    ("scenario", "touchpoint"),
    versioned=True,
)

SINK_PROGRESS = Table(
    "sink_progress",
    (
        ("scenario", "LowCardinality(String)"),  # live: only the streaming worker writes it
        ("consumer", "LowCardinality(String)"),  # the worker group (TOUCHPATH_APP_ID)
        ("topic", "LowCardinality(String)"),
        ("partition", "UInt32"),
        ("next_offset", "UInt64"),  # every message before it is in the tables above
        *VERSION,
    ),
    ("scenario", "consumer", "topic", "partition"),
    versioned=True,
)

# What the engine derives from events: a restart, a replay or another arrival order must give the
# same rows (versions aside).
JOURNEY_PROJECTIONS = (
    TOUCHPOINT_EVENTS,
    JOURNEY_INSTANCES,
    DEVIATIONS,
    FRICTION_SIGNALS,
    DELIGHT_SIGNALS,
    SUPPORT_ATTRIBUTION,
)

TABLES = (
    *JOURNEY_PROJECTIONS,
    BAD_EVENTS,
    ALERTS,
    ALERT_DELIVERIES,
    ALERT_STATE,
    JOURNEY_STATE,
    SINK_PROGRESS,
)
