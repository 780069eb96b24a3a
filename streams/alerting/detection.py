"""Alerting in the embedded runner: the friction detector on each drained batch, alert rows, routing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import orjson
import structlog

from projections import schema
from projections.alerts.codec import decode_detector, encode_detector
from projections.alerts.config import DetectorConfig, detector_config
from projections.alerts.detector import FrictionDetector
from projections.alerts.model import AlertAction, AlertEvent, Observation, ObservationKind
from projections.alerts.rows import OBSERVED_COLUMNS, OBSERVED_TABLES, alert_row, observations_of_columns
from projections.alerts.slack.message import slack_payload
from projections.engine import RowBatch
from projections.journeys import JourneyModel
from streams.alerting.delivery import (
    DeliveryAttempt,
    DeliveryJob,
    Outcome,
    RetryPolicy,
    WebhookDelivery,
    redact_url,
)
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.columns import ColumnBatch, columns_of

log = structlog.get_logger("touchpath.alerts")


def settings_id(config: DetectorConfig) -> str:
    """A hash of the alert settings and rules: kept detector states are only reused under the same."""
    text = config.settings.model_dump_json() + repr(sorted(config.rules.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def destination_id(url: str) -> str:
    """A stable id of a webhook URL that does not reveal it (webhook URLs carry secrets)."""
    return hashlib.blake2b(url.encode(), digest_size=8).hexdigest()


def attempt_row(attempt: DeliveryAttempt, scenario: str) -> tuple[object, ...]:
    """A delivery attempt as a row of the `alert_deliveries` table."""
    return (
        scenario,
        attempt.job.alert_id,
        attempt.job.team,
        destination_id(attempt.job.url),
        redact_url(attempt.job.url),
        attempt.attempt,
        attempt.attempted_at_ms,
        attempt.outcome.value,
        attempt.status_code,
        attempt.error,
    )


def delivered_before(store: ClickHouseProjectionStore, scenario: str) -> set[tuple[str, str]]:
    """(alert_id, destination_id) pairs already delivered in this scenario: never sent again."""
    _, rows = store.query(
        "SELECT DISTINCT alert_id, destination_id FROM alert_deliveries "
        "WHERE scenario = {scenario:String} AND outcome = 'delivered'",
        {"scenario": scenario},
    )
    return {(str(alert_id), str(dest)) for alert_id, dest in rows}


@dataclass(slots=True)
class AlertingSummary:
    """What alerting did in one run, for the end-of-run summary."""

    opened: int = 0
    updated: int = 0
    resolved: int = 0
    still_open: list[str] = field(default_factory=list)
    queued: int = 0
    already_delivered: int = 0
    no_destination: set[str] = field(default_factory=set)
    delivered: int = 0
    failed_destinations: dict[str, str] = field(default_factory=dict)  # destination -> last error

    def lines(self) -> list[str]:
        """Human lines for the end of a run."""
        out = [
            f"alerts: {self.opened} incidents opened, {self.resolved} resolved, {self.updated} updates"
            + (f"; still open: {', '.join(self.still_open)}" if self.still_open else "")
        ]
        if self.queued or self.already_delivered:
            out.append(
                f"deliveries: {self.delivered} of {self.queued} sent"
                + (f", {self.already_delivered} skipped (delivered before)" if self.already_delivered else "")
            )
        if self.no_destination:
            out.append(f"teams with alerts but no destination: {', '.join(sorted(self.no_destination))}")
        for destination, error in sorted(self.failed_destinations.items()):
            out.append(f"FAILING destination {destination}: {error} (see alert_deliveries)")
        return out


class EmbeddedAlerting:
    """Runs the friction detector over each drained batch, adds `alerts` rows to the batch, and
    hands new alerts to the webhook delivery (which never blocks the caller)."""

    def __init__(
        self,
        model: JourneyModel,
        scenario: str = "live",
        *,
        delivery: WebhookDelivery | None = None,
        delivered: set[tuple[str, str]] | None = None,
        config: DetectorConfig | None = None,
        keep_state: bool = False,
    ) -> None:
        self.model = model
        self.scenario = scenario
        self.config = config if config is not None else detector_config(model)
        self.detector = FrictionDetector(self.config)
        # Write the touchpoints' detector states with each batch so the next run goes on from them.
        self.keep_state = keep_state
        self.settings_id = settings_id(self.config)
        self.delivery = delivery
        self.delivered = delivered if delivered is not None else set()
        self.summary = AlertingSummary()
        self.alerts: list[AlertEvent] = []

    def restore(self, store: ClickHouseProjectionStore) -> int:
        """Go on from the detector states an earlier run kept for this scenario (same settings
        only: states built with other settings are left behind); returns how many."""
        _, rows = store.query(
            "SELECT touchpoint, settings_id, state FROM alert_state FINAL WHERE scenario = {scenario:String}",
            {"scenario": self.scenario},
        )
        restored = 0
        for touchpoint, kept_with, raw in rows:
            if kept_with != self.settings_id or self.config.rule(touchpoint) is None:
                log.warning("alerts.state_skipped", touchpoint=touchpoint, reason="alert settings changed")
                continue
            state = decode_detector(raw.encode() if isinstance(raw, str) else raw)
            self.detector.states[touchpoint] = state
            self.detector.clock = max(self.detector.clock, state.clock)
            restored += 1
        return restored

    def process(self, batch: RowBatch | ColumnBatch, watermark: int) -> list[AlertEvent]:
        """Detect on one drained batch (tuple rows or Arrow columns); alert rows (and finished
        delivery attempts, and the detector states when kept) join the batch."""
        before = {touchpoint: state.clock for touchpoint, state in self.detector.states.items()}
        observed = columns_of(batch, OBSERVED_TABLES, OBSERVED_COLUMNS)
        observations = observations_of_columns(observed, self.config, ruled_only=True)
        alerts = self.detector.observe_all(observations, watermark, ordered=True)
        for alert in alerts:
            batch.add(schema.ALERTS, alert_row(alert, self.scenario))
            self._count(alert)
            self._route(alert)
        self.alerts.extend(alerts)
        self._collect(batch)
        if self.keep_state:
            for touchpoint, state in sorted(self.detector.states.items()):
                if before.get(touchpoint) != state.clock:
                    batch.add(
                        schema.ALERT_STATE,
                        (self.scenario, touchpoint, self.settings_id, encode_detector(state).decode(),
                         max(0, state.clock), 0),
                    )  # fmt: skip
        return alerts

    def finish(self, store: ClickHouseProjectionStore | None, timeout: float = 30.0) -> AlertingSummary:
        """Wait (up to `timeout` s) for pending deliveries, write their attempts, and summarise."""
        summary = self.summary
        summary.still_open = sorted(
            touchpoint for touchpoint, state in self.detector.states.items() if state.incident is not None
        )
        if self.delivery is not None:
            self.delivery.close(timeout)
            batch = RowBatch()
            self._collect(batch)
            if store is not None and len(batch):
                store.write(batch)
            summary.failed_destinations = self.delivery.failing()
        return summary

    def _count(self, alert: AlertEvent) -> None:
        if alert.action is AlertAction.OPEN:
            self.summary.opened += 1
        elif alert.action is AlertAction.RESOLVE:
            self.summary.resolved += 1
        elif alert.action is AlertAction.UPDATE:
            self.summary.updated += 1
        log.info(
            "alert",
            action=alert.action.value,
            touchpoint=alert.touchpoint,
            team=alert.owner_team,
            alert_id=alert.alert_id,
            ratio=round(alert.ratio, 2),
            sigma=round(alert.sigma, 1),
        )

    def _route(self, alert: AlertEvent) -> None:
        if self.delivery is None:
            return
        team = self.model.registry.team(alert.owner_team)
        if team is None or not team.destinations:
            self.summary.no_destination.add(alert.owner_team)
            return
        payload = orjson.dumps(slack_payload(alert, self.scenario))
        for destination in team.destinations:
            if (alert.alert_id, destination_id(destination.webhook)) in self.delivered:
                self.summary.already_delivered += 1
                continue
            self.summary.queued += 1
            self.delivery.submit(DeliveryJob(alert.alert_id, team.id, destination.webhook, payload))

    def _collect(self, batch: RowBatch | ColumnBatch) -> None:
        if self.delivery is None:
            return
        for attempt in self.delivery.take_attempts():
            batch.add(schema.ALERT_DELIVERIES, attempt_row(attempt, self.scenario))
            if attempt.outcome is Outcome.DELIVERED:
                self.summary.delivered += 1
                self.delivered.add((attempt.job.alert_id, destination_id(attempt.job.url)))


class AlertMode(StrEnum):
    """What `touchpath run` does with alerts."""

    SEND = "send"  # record them and deliver them to the owning team's webhooks
    RECORD = "record"  # record them in the alerts table only
    OFF = "off"


def embedded_alerting(
    model: JourneyModel,
    store: ClickHouseProjectionStore,
    scenario: str,
    mode: AlertMode,
    policy: RetryPolicy | None = None,
) -> EmbeddedAlerting | None:
    """Alerting for one embedded run; with SEND, alerts already delivered in this scenario (an
    earlier run of the same input) are not sent again."""
    if mode is AlertMode.OFF or not model.settings.alerts.enabled:
        return None
    if mode is AlertMode.RECORD:
        alerting = EmbeddedAlerting(model, scenario, keep_state=True)
    else:
        alerting = EmbeddedAlerting(
            model,
            scenario,
            delivery=WebhookDelivery(policy),
            delivered=delivered_before(store, scenario),
            keep_state=True,
        )
    alerting.restore(store)
    return alerting


HISTORY_DAY = 86_400_000
_HISTORY = {
    "touchpoint_events": """SELECT event_id, customer_id, toUnixTimestamp64Milli(occurred_at), touchpoint,
       persona
FROM touchpoint_events FINAL
WHERE scenario = {scenario:String} AND occurred_at >= {low:DateTime64(3, 'UTC')}
  AND occurred_at < {high:DateTime64(3, 'UTC')}""",
    "friction_signals": """SELECT signal_id, customer_id, toUnixTimestamp64Milli(occurred_at), touchpoint,
       persona, journey_id, journey_version, kind, event_ids
FROM friction_signals FINAL
WHERE scenario = {scenario:String} AND occurred_at >= {low:DateTime64(3, 'UTC')}
  AND occurred_at < {high:DateTime64(3, 'UTC')}""",
    "support_attribution": """SELECT support_event_id, customer_id, toUnixTimestamp64Milli(occurred_at),
       support_touchpoint, persona, upstream_touchpoint, upstream_event_id
FROM support_attribution FINAL
WHERE scenario = {scenario:String} AND occurred_at >= {low:DateTime64(3, 'UTC')}
  AND occurred_at < {high:DateTime64(3, 'UTC')}""",
}


class WouldBeAlertRecorder:
    """The alerts a stored history would have raised, recorded under its scenario and never sent.

    Reads the scenario's final rows (FINAL) a day at a time in event-time order, so a replay (which
    writes customer by customer) gets the alerts a live run over the same history would give, minus
    the effect of late arrivals.
    """

    def record(self, store: ClickHouseProjectionStore, model: JourneyModel, scenario: str) -> int:
        """Write the scenario's would-be alerts; returns how many."""
        config = detector_config(model)
        detector = FrictionDetector(config)
        low, high = store.query(
            "SELECT toUnixTimestamp64Milli(min(occurred_at)), toUnixTimestamp64Milli(max(occurred_at)) "
            "FROM touchpoint_events WHERE scenario = {scenario:String}",
            {"scenario": scenario},
        )[1][0]
        if low is None or high is None or int(high) < int(low):
            return 0
        written = 0
        day = int(low) - int(low) % HISTORY_DAY
        while day <= int(high):
            until = day + HISTORY_DAY
            observations = self._observations(store, config, scenario, day, until)
            rows = [alert_row(alert, scenario) for alert in detector.observe_all(observations, until)]
            if rows:
                store.insert_rows(schema.ALERTS, rows)
                written += len(rows)
            day = until
        return written

    @staticmethod
    def _observations(
        store: ClickHouseProjectionStore, config: DetectorConfig, scenario: str, low: int, high: int
    ) -> list[Observation]:
        parameters: dict[str, object] = {
            "scenario": scenario,
            "low": datetime.fromtimestamp(low / 1000, tz=UTC),
            "high": datetime.fromtimestamp(high / 1000, tz=UTC),
        }
        out: list[Observation] = []
        _, rows = store.query(_HISTORY["touchpoint_events"], parameters)
        for event_id, customer, ts, touchpoint, persona in rows:
            out.append(
                Observation(ObservationKind.TRAFFIC, touchpoint, int(ts), event_id, customer, persona,
                            event_ids=(event_id,))
            )  # fmt: skip
        kinds = config.kinds
        _, rows = store.query(_HISTORY["friction_signals"], parameters)
        for signal_id, customer, ts, touchpoint, persona, journey, version, kind, event_ids in rows:
            if kind in kinds:
                out.append(
                    Observation(ObservationKind.FRICTION, touchpoint, int(ts), signal_id, customer, persona,
                                f"{journey}@{version}", kind, event_ids=tuple(event_ids))
                )  # fmt: skip
        _, rows = store.query(_HISTORY["support_attribution"], parameters)
        for support_id, customer, ts, touchpoint, persona, upstream, upstream_id in rows:
            ids = (support_id,) if upstream_id is None else (support_id, upstream_id)
            out.append(
                Observation(ObservationKind.CONTACT, touchpoint, int(ts), support_id, customer, persona,
                            upstream=upstream, event_ids=ids)
            )  # fmt: skip
        return out
