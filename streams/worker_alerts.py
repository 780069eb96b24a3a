"""Friction spike detection in the worker: re-key observations by touchpoint, detect, publish, deliver."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog

from projections import schema
from projections.alerts import (
    AlertEvent,
    advance,
    alert_row,
    decode_observation,
    decode_state,
    detector_config,
    encode_observation,
    encode_state,
    new_state,
    observations_of,
    observe,
    slack_payload,
)
from projections.journeys import JourneyModel
from streams.alerting import attempt_row, delivered_before, destination_id
from streams.delivery import DeliveryJob, Outcome, WebhookDelivery
from streams.store import ClickHouseProjectionStore, StoreError
from streams.topics import TopicNames

log = structlog.get_logger("touchpath.worker.alerts")

SCENARIO = "live"


def install_alerting(
    app: Any,
    model: JourneyModel,
    store: ClickHouseProjectionStore,
    names: TopicNames,
    partitions: int,
) -> None:
    """Add the re-key agent, the per-touchpoint detector agent (state in a changelog-backed table),
    and a timer that lets quiet touchpoints resolve and writes delivery attempts."""
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
    table = app.Table(
        "alert-state",
        default=None,
        partitions=partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
    )
    delivery = WebhookDelivery()
    delivered = delivered_before(store, SCENARIO)
    lock = asyncio.Lock()
    clock = {"watermark": -(2**62)}

    async def rekey(stream: Any) -> None:
        # Each touchpoint's counts must live in one place: send every observation to the partition
        # of its touchpoint (the journey agent's partitions are by customer).
        async for batch in stream.take_events(2_000, within=0.5):
            for event in batch:
                update = orjson.loads(event.value)
                for observation in observations_of(update["rows"], config):
                    await by_touchpoint.send(
                        key=observation.touchpoint.encode(), value=encode_observation(observation)
                    )

    async def detect(stream: Any) -> None:
        async for batch in stream.take_events(500, within=1.0):
            async with lock:
                observations = sorted(
                    (decode_observation(event.value) for event in batch), key=lambda o: (o.ts, o.kind.value)
                )
                states: dict[str, Any] = {}
                alerts: list[AlertEvent] = []
                for observation in observations:
                    touchpoint = observation.touchpoint
                    state = states.get(touchpoint)
                    if state is None:
                        stored = table.get(touchpoint.encode())
                        state = decode_state(stored) if stored is not None else new_state(touchpoint)
                    # Each touchpoint's clock follows its own observations in event-time order.
                    state, raised = observe(state, observation, observation.ts, config)
                    states[touchpoint] = state
                    alerts.extend(raised)
                    clock["watermark"] = max(clock["watermark"], observation.ts)
                await publish(alerts)
                for touchpoint, state in states.items():
                    table[touchpoint.encode()] = encode_state(state)

    async def publish(alerts: list[AlertEvent]) -> None:
        """Topic and table first (ids are deterministic, so a replay after a crash repeats the
        same alert, which the table collapses and delivery skips), then the webhooks."""
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
                if (alert.alert_id, destination_id(destination.webhook)) not in delivered:
                    delivery.submit(DeliveryJob(alert.alert_id, team.id, destination.webhook, payload))

    async def tick() -> None:
        if app.rebalancing or app.in_recovery:
            return
        async with lock:
            alerts: list[AlertEvent] = []
            changed = {}
            # Quiet touchpoints are judged against the other touchpoints' progress, held back by the
            # detector's lateness so partitions that lag a little still count.
            now = clock["watermark"] - config.settings.lateness
            for key, stored in list(table.items()):
                state, raised = advance(decode_state(stored), now, config)
                if raised:
                    alerts.extend(raised)
                    changed[key] = state
            await publish(alerts)
            for key, state in changed.items():
                table[key] = encode_state(state)
        attempts = delivery.take_attempts()
        for attempt in attempts:
            if attempt.outcome is Outcome.DELIVERED:
                delivered.add((attempt.job.alert_id, destination_id(attempt.job.url)))
        if attempts:
            await _insert(store, schema.ALERT_DELIVERIES, [attempt_row(a, SCENARIO) for a in attempts])

    app.agent(derived, name="alerts-rekey", concurrency=1)(rekey)
    app.agent(by_touchpoint, name="alerts-detect", concurrency=1)(detect)
    app.timer(interval=2.0)(tick)


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
