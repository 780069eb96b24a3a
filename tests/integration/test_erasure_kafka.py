"""touchpath erase --kafka: a tombstone for the customer's key in the worker's journey-state changelog."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.cli.main import main
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.conftest import event_line

pytestmark = pytest.mark.kafka

APP_ID = f"erase-test-{uuid.uuid4().hex[:8]}"  # a fresh topic on a broker shared by test runs
TOPIC = f"{APP_ID}-journey-state-changelog"
TARGET = "erase-me-kafka-1"
OTHERS = [f"keep-{i}" for i in range(8)]


def _records(bootstrap: str) -> dict[bytes, list[tuple[int, bytes | None]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        out: dict[bytes, list[tuple[int, bytes | None]]] = {}
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                for record in batch:
                    out.setdefault(record.key, []).append((tp.partition, record.value))
        return out
    finally:
        consumer.close()


def test_erase_with_kafka_tombstones_the_customers_journey_state(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tombstone lands on the partition holding the customer's state records (the default
    partitioner, as the worker's changelog uses), and no other key gets one."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, 6, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for customer in [TARGET, *OTHERS]:
        producer.send(TOPIC, key=customer.encode(), value=b"\x01state")
    producer.flush()
    producer.close()
    source = tmp_path / "events.jsonl"
    source.write_bytes(event_line("e-1", TARGET, "web.cart", 0) + b"\n")
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("TOUCHPATH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TOUCHPATH_APP_ID", APP_ID)
    assert main(["erase", "--customer", TARGET, "--kafka", "--data-dir", str(data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ((partition, _),) = report["kafka_tombstones"]

    records = _records(kafka_bootstrap)
    state, tombstone = records[TARGET.encode()]
    assert state == (partition, b"\x01state")
    assert tombstone == (partition, None)
    assert all(records[customer.encode()] == [(records[customer.encode()][0][0], b"\x01state")]
               for customer in OTHERS)  # fmt: skip


def test_erase_with_kafka_and_no_worker_topic_says_so(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment without the worker has no state topic: nothing is written, and the output says so."""
    data_dir = tmp_path / "data"
    store = ClickHouseProjectionStore.embedded(data_dir)  # erase refuses a data dir without a store
    store.create_schema()
    store.close()
    monkeypatch.setenv("TOUCHPATH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TOUCHPATH_APP_ID", "no-such-app")
    assert main(["erase", "--customer", "someone", "--kafka", "--data-dir", str(data_dir)]) == 0
    assert "kafka: no topic no-such-app-journey-state-changelog" in capsys.readouterr().out
