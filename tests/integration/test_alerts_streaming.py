"""Friction spike alerts in the streaming worker, on the real broker: one open, one resolve, once each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from streams.common.topics import TopicNames
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.integration.streaming import WorkerProcess, produce_lines
from tests.integration.test_alerts_embedded import Receiver, journeys_with_webhook, spike_input

pytestmark = pytest.mark.kafka


class AlertsTopic:
    """Reads touchpath.alerts from the beginning, collecting every message."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.messages: list[dict[str, Any]] = []

    def wait_for(self, count: int, worker: WorkerProcess, timeout: float = 240.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=1000).values():
                self.messages.extend(orjson.loads(record.value) for record in records)
            if worker.process is not None and worker.process.poll() is not None:
                raise AssertionError(f"worker exited: {worker.tail()}")
        assert len(self.messages) >= count, f"{self.messages}\n{worker.tail()}"
        return self.messages

    def settle(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds` more (to catch a duplicate)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=500).values():
                self.messages.extend(orjson.loads(record.value) for record in records)
        return self.messages


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A local webhook answering 200."""
    with Receiver() as running:
        yield running


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_a_spike_alerts_once_across_a_restart_mid_incident(
    kafka_bootstrap: str, tmp_path: Path, webhook: Receiver
) -> None:
    """Half the input (into the spike), a worker restart, the rest: one open and one resolve on
    touchpath.alerts, one row each in `alerts`, one delivery each to the team's webhook."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(journeys_with_webhook(webhook.url))
    prefix = f"al{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    first = _lines(spike_input(tmp_path / "first.jsonl", range(76)))
    second = _lines(spike_input(tmp_path / "second.jsonl", range(76, 96)))
    data_dir = tmp_path / "streamed"
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir, extra_env={"TOUCHPATH_JOURNEYS": str(journeys)})
    produce_lines(kafka_bootstrap, names, first)
    topic = AlertsTopic(kafka_bootstrap, names.alerts)
    worker.start()
    try:
        opened = topic.wait_for(1, worker)
        assert [message["action"] for message in opened] == ["open"]
        worker.wait_idle(len(first))
        worker.stop()  # restart mid-incident
        assert [message["action"] for message in topic.settle(3)] == ["open"]
        worker.start()
        produce_lines(kafka_bootstrap, names, second)
        messages = topic.wait_for(2, worker)
        worker.wait_idle(0)
        messages = topic.settle(5)
        deadline = time.monotonic() + 30
        while len(webhook.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # delivery attempts are written every 2 s
    finally:
        worker.stop()
        topic.consumer.close()

    assert [(m["action"], m["touchpoint"], m["owner_team"]) for m in messages] == [
        ("open", "web.checkout", "ecommerce"),
        ("resolve", "web.checkout", "ecommerce"),
    ]
    assert messages[0]["incident_id"] == messages[1]["incident_id"]
    assert messages[0]["kinds"]["failure"] >= 4
    sent = [body["metadata"]["event_payload"] for body in webhook.bodies]
    assert [(item["action"], item["alert_id"]) for item in sent] == [
        (m["action"], m["alert_id"]) for m in messages
    ]
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        _, rows = store.query("SELECT action, alert_id FROM alerts FINAL ORDER BY detected_at")
        _, deliveries = store.query("SELECT outcome, count() FROM alert_deliveries FINAL GROUP BY outcome")
    finally:
        store.close()
    assert rows == [(m["action"], m["alert_id"]) for m in messages]
    assert deliveries == [("delivered", 2)]
