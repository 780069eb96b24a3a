"""Friction spike detection in the loader: fed in-process from each batch's rows, kept in alert_state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import orjson
import structlog

from projections import schema
from projections.alerts.config import detector_config
from projections.alerts.holdback import HeldDetector, decode_record, encode_record
from projections.alerts.model import AlertEvent, Observation
from projections.alerts.rows import alert_row, observations_of
from projections.alerts.slack.message import slack_payload
from projections.journeys import JourneyModel
from streams.alerting.delivery import DeliveryJob, WebhookDelivery
from streams.alerting.detection import attempt_row, delivered_before, destination_id, settings_id
from streams.store.protocol import ProjectionStore
from streams.worker.records import Kind, Record

log = structlog.get_logger("touchpath.worker.alerts")

SCENARIO = "live"


class StreamAlerting:
    """The detector over every journey-events partition, in event-time order.

    Partitions progress at different speeds, so observations are held until every partition has
    passed them (HeldDetector). Each touchpoint's record in alert_state holds its detector state,
    held observations, alerts not yet known to be published (its outbox) and, per partition, the
    next journey-events offset already offered: a batch the loader reads again after a crash
    (the rows are written before the loader's progress) is not counted twice.
    """

    def __init__(
        self,
        model: JourneyModel,
        store: ProjectionStore,
        partitions: int,
        publish: Callable[[list[AlertEvent]], None],
        delivery: WebhookDelivery | None = None,
    ) -> None:
        self.model = model
        self.config = detector_config(model)
        self.held = HeldDetector(self.config, partitions)
        # Records of this detector are not the embedded runner's (those are plain detector states).
        self.settings_id = "held:" + settings_id(self.config)
        self.publish = publish
        self.delivery = delivery if delivery is not None else WebhookDelivery()
        self.delivered = delivered_before(store, SCENARIO)  # type: ignore[arg-type]
        self.applied: dict[str, dict[int, int]] = defaultdict(dict)
        self.outbox: dict[str, list[AlertEvent]] = {}
        self.changed: set[str] = set()
        self.raised: list[AlertEvent] = []
        self.version = 0
        self._restore(store)

    def _restore(self, store: ProjectionStore) -> None:
        _, rows = store.query(
            "SELECT touchpoint, settings_id, state, version FROM alert_state FINAL "
            "WHERE scenario = {scenario:String} AND settings_id = {settings:String}",
            {"scenario": SCENARIO, "settings": self.settings_id},
        )
        unpublished: list[AlertEvent] = []
        for touchpoint, _, raw, version in rows:
            if self.config.rule(touchpoint) is None:
                continue
            applied, record = orjson.loads(raw)
            self.held.restore(decode_record(orjson.dumps(record)))
            self.applied[touchpoint] = {int(p): int(o) for p, o in applied.items()}
            self.version = max(self.version, int(version))
            if record[3]:
                decoded = decode_record(orjson.dumps(record))
                self.outbox[touchpoint] = decoded.outbox
                unpublished.extend(decoded.outbox)
        # Alerts raised and kept just before a crash: publish again (same ids: the table collapses
        # them and delivery skips what was delivered).
        self.raised = unpublished

    def offer(self, partition: int, offset: int, record: Record) -> None:
        """One record of a partition's chain: its time, and a batch's observations."""
        if record.stream_time is not None:
            self.held.advance_source(partition, record.stream_time)
        if record.kind is not Kind.BATCH or not record.rows:
            return
        grouped: dict[str, list[Observation]] = defaultdict(list)
        for observation in observations_of(record.rows, self.config):
            grouped[observation.touchpoint].append(observation)
        for touchpoint, observations in grouped.items():
            applied = self.applied[touchpoint]
            if offset < applied.get(partition, 0):
                continue  # offered before a restart
            applied[partition] = offset + 1
            self.held.pending.setdefault(touchpoint, []).extend(observations)
            self.changed.add(touchpoint)

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        """Alerts raised by what the watermark passed, the changed records, delivery attempts."""
        raised, changed = self.held.release()
        self.raised.extend(raised)
        changed |= self.changed | set(self.outbox) | {alert.touchpoint for alert in raised}
        self.changed = set()
        self.outbox = {}
        for alert in self.raised:
            self.outbox.setdefault(alert.touchpoint, []).append(alert)
        self.version += 1
        states: list[tuple[object, ...]] = []
        for touchpoint in sorted(changed):
            record = encode_record(self.held.record(touchpoint, self.outbox.get(touchpoint, [])))
            applied = {str(p): o for p, o in self.applied.get(touchpoint, {}).items()}
            value = orjson.dumps([applied, orjson.Fragment(record)]).decode()
            states.append((SCENARIO, touchpoint, self.settings_id, value, self.version, 0))
        out: dict[str, list[tuple[object, ...]]] = {}
        if states:
            out[schema.ALERT_STATE.name] = states
        if raised:
            out[schema.ALERTS.name] = [alert_row(alert, SCENARIO) for alert in raised]
        attempts = self.delivery.take_attempts()
        if attempts:
            out[schema.ALERT_DELIVERIES.name] = [attempt_row(a, SCENARIO) for a in attempts]
        return out

    def stored(self) -> None:
        """The alerts are in the store: publish them, hand them to delivery; the next rows() clears
        their outboxes (a crash before that publishes them again)."""
        if not self.raised:
            return
        self.publish(self.raised)
        for alert in self.raised:
            log.info("alert", action=alert.action.value, touchpoint=alert.touchpoint, alert_id=alert.alert_id)
            team = self.model.registry.team(alert.owner_team)
            if team is None:
                continue
            payload = orjson.dumps(slack_payload(alert, SCENARIO))
            for destination in team.destinations:
                key = (alert.alert_id, destination_id(destination.webhook))
                if key not in self.delivered:
                    self.delivered.add(key)  # submitted: a re-publish must not send it again
                    self.delivery.submit(DeliveryJob(alert.alert_id, team.id, destination.webhook, payload))
        self.raised = []
