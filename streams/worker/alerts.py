"""Friction spike detection in the worker: re-key observations by touchpoint, detect, publish, deliver."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog

from projections import schema
from projections.alerts.config import detector_config
from projections.alerts.holdback import (
    HeldDetector,
    decode_observations,
    decode_record,
    encode_observations,
    encode_record,
)
from projections.alerts.model import AlertEvent, Observation
from projections.alerts.rows import alert_row, observations_of
from projections.alerts.slack.message import slack_payload
from projections.journeys import JourneyModel
from streams.alerting.delivery import DeliveryJob, WebhookDelivery
from streams.alerting.detection import attempt_row, delivered_before, destination_id
from streams.common.topics import TOPIC_CONFIGS, TopicNames, partition_for
from streams.store.clickhouse import ClickHouseProjectionStore, StoreError
from streams.worker.partitioning import send_changelog

log = structlog.get_logger("touchpath.worker.alerts")

SCENARIO = "live"


def install_alerting(
    app: Any,
    model: JourneyModel,
    store: ClickHouseProjectionStore,
    names: TopicNames,
    partitions: int,
) -> None:
    """Add the re-key agent, the per-touchpoint detector agent (records in a changelog-backed table)
    and a timer that writes delivery attempts."""
    config = detector_config(model)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    derived = app.topic(names.journey_events, partitions=partitions, **raw)
    by_touchpoint = app.topic(names.friction_by_touchpoint, partitions=partitions, **raw)
    alerts_topic = app.topic(names.alerts, partitions=partitions, **raw)
    # Keyed by touchpoint with the producer's partitioner: a touchpoint's record lives in the same
    # partition number as its re-keyed observations.
    table = app.Table(
        "alert-state",
        default=None,
        partitions=partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
        extra_topic_configs=TOPIC_CONFIGS,
    )
    delivery = WebhookDelivery()
    delivered = delivered_before(store, SCENARIO)
    lock = asyncio.Lock()
    detectors: dict[int, HeldDetector] = {}  # per re-keyed partition, rebuilt after a rebalance
    reload = {"needed": False}

    async def rekey(stream: Any) -> None:
        # Each touchpoint's counts must live in one place: send every observation to the partition
        # of its touchpoint (the journey agent's partitions are by customer), one message per
        # touchpoint and run of updates rather than per observation. Progress markers go to every
        # partition, behind the observations of the updates before them.
        grouped: dict[str, list[Observation]] = {}

        async def flush() -> None:
            for touchpoint, observations in grouped.items():
                await by_touchpoint.send(key=touchpoint.encode(), value=encode_observations(observations))
            grouped.clear()

        async for batch in stream.take_events(2_000, within=0.5):
            for event in batch:
                message = orjson.loads(event.value)
                kind = message.get("type")
                if kind == "progress":
                    await flush()
                    marker = orjson.dumps({"source": message["partition"], "time": message["stream_time"]})
                    for partition in range(partitions):
                        await by_touchpoint.send(value=marker, partition=partition)
                elif kind == "journey_update":
                    for observation in observations_of(message["rows"], config):
                        grouped.setdefault(observation.touchpoint, []).append(observation)
            await flush()

    async def detector_for(partition: int) -> HeldDetector:
        if reload["needed"]:
            detectors.clear()
            reload["needed"] = False
        held = detectors.get(partition)
        if held is None:
            held = detectors[partition] = HeldDetector(config, partitions)
            unpublished = []
            for key, value in list(table.items()):
                if partition_for(key, partitions) != partition:
                    continue
                record = decode_record(value)
                if config.rule(record.state.touchpoint) is None:
                    continue
                held.restore(record)
                unpublished.extend(record.outbox)
            # Alerts raised and kept just before a crash: publish again (same ids, so the table
            # collapses them and delivery skips what was delivered).
            await publish(unpublished)
        return held

    async def detect(stream: Any) -> None:
        async for batch in stream.take_events(1_000, within=0.5):
            async with lock:
                offered: dict[int, set[str]] = {}  # per partition: touchpoints given observations
                for event in batch:
                    partition = event.message.partition
                    held = await detector_for(partition)
                    touchpoints = offered.setdefault(partition, set())
                    if event.value[:1] == b"{":
                        marker = orjson.loads(event.value)
                        held.advance_source(int(marker["source"]), int(marker["time"]))
                        continue
                    observations = decode_observations(event.value)
                    if held.offer(observations, event.message.offset):
                        touchpoints.add(observations[0].touchpoint)
                alerts: list[AlertEvent] = []
                written = []
                for partition, touchpoints in sorted(offered.items()):
                    held = detectors[partition]
                    raised, changed = held.release()
                    alerts.extend(raised)
                    # What was offered is kept too (held observations are in the records): the
                    # batch's offsets are committed after this.
                    changed |= touchpoints | {alert.touchpoint for alert in raised}
                    for touchpoint in changed:
                        outbox = [alert for alert in raised if alert.touchpoint == touchpoint]
                        value = encode_record(held.record(touchpoint, outbox))
                        future = send_changelog(table, touchpoint.encode(), value)
                        table.data[touchpoint.encode()] = value
                        written.append(future)
                # Records (with their alerts as outbox) durable first, then the alerts go out, then
                # the outboxes are emptied (a crash in between publishes again: same alert ids).
                if written:
                    await asyncio.gather(*written)
                await publish(alerts)
                cleared = []
                for partition, touchpoint in sorted(
                    {(partition_for(a.touchpoint.encode(), partitions), a.touchpoint) for a in alerts}
                ):
                    value = encode_record(detectors[partition].record(touchpoint, []))
                    cleared.append(send_changelog(table, touchpoint.encode(), value))
                    table.data[touchpoint.encode()] = value
                if cleared:
                    await asyncio.gather(*cleared)

    async def publish(alerts: list[AlertEvent]) -> None:
        """Topic and table, then the webhooks. Alert ids are deterministic: an alert published again
        after a crash collapses in the table and is not delivered twice."""
        if not alerts:
            return
        for alert in alerts:
            value = orjson.dumps({"scenario": SCENARIO, **alert.as_dict()})
            await alerts_topic.send(key=alert.touchpoint.encode(), value=value)
        await app.producer.flush()
        rows = [alert_row(alert, SCENARIO) for alert in alerts]
        await _insert(store, schema.ALERTS, rows)
        for alert in alerts:
            log.info("alert", action=alert.action.value, touchpoint=alert.touchpoint, alert_id=alert.alert_id)
            team = model.registry.team(alert.owner_team)
            if team is None:
                continue
            payload = orjson.dumps(slack_payload(alert, SCENARIO))
            for destination in team.destinations:
                key = (alert.alert_id, destination_id(destination.webhook))
                if key not in delivered:
                    delivered.add(key)  # submitted: a re-publish must not send it again
                    delivery.submit(DeliveryJob(alert.alert_id, team.id, destination.webhook, payload))

    async def record_attempts() -> None:
        attempts = delivery.take_attempts()
        if attempts:
            await _insert(store, schema.ALERT_DELIVERIES, [attempt_row(a, SCENARIO) for a in attempts])

    def on_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        reload["needed"] = True

    app.on_partitions_revoked.connect(on_rebalance)
    app.on_partitions_assigned.connect(on_rebalance)
    app.agent(derived, name="alerts-rekey", concurrency=1)(rekey)
    app.agent(by_touchpoint, name="alerts-detect", concurrency=1)(detect)
    app.timer(interval=2.0)(record_attempts)


async def _insert(
    store: ClickHouseProjectionStore, table: schema.Table, rows: list[tuple[object, ...]]
) -> None:
    loop = asyncio.get_running_loop()
    delay = 0.5
    while True:
        try:
            await loop.run_in_executor(None, store.insert_rows, table, rows)
            return
        except StoreError as error:
            log.warning("alerts.insert_failed", table=table.name, error=str(error), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
