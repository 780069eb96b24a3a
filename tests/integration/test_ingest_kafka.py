"""SDK and HTTP ingest against the real broker: accepted events arrive exactly once, keyed by customer."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from kafka_broker import create_topic

from events.sdk import ClientOptions, TouchpathClient
from projections.journeys import JourneyModel
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import KafkaSink, create_app

pytestmark = pytest.mark.kafka

PARTITIONS = 3
SECRET = "integration-secret-0123456789"
READ_DEADLINE_S = 30.0


def read_topic(
    bootstrap: str, topic: str, partitions: int = PARTITIONS
) -> list[tuple[str, dict[str, Any], int]]:
    """Every record of a topic as (key, decoded value, partition), read up to the end offsets of now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end_offsets: dict[TopicPartition, int] = consumer.end_offsets(assigned)
        records: list[tuple[str, dict[str, Any], int]] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while any(consumer.position(tp) < end for tp, end in end_offsets.items()):
            assert time.monotonic() < deadline, f"only {len(records)} records of {topic} read in time"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend((r.key.decode(), orjson.loads(r.value), tp.partition) for r in batch)
        return records
    finally:
        consumer.close()


def new_topic(bootstrap: str, label: str) -> str:
    """A fresh topic for one test."""
    topic = f"touchpath-it-{label}-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, PARTITIONS)
    return topic


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def touchpoint_event(n: int, run: str) -> dict[str, Any]:
    """Event <run>-<n> of customer cust-<n mod 11>, n minutes after T0."""
    return {
        "event_id": f"{run}-{n}",
        "customer_id": f"cust-{n % 11}",
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
        "channel": "web",
        "touchpoint": "web.product_page",
    }


def test_sdk_events_arrive_exactly_once_on_their_customers_partition(kafka_bootstrap: str) -> None:
    """Each emitted event is in the topic once, keyed by customer_id, one partition per customer."""
    topic = new_topic(kafka_bootstrap, "sdk")
    run = uuid.uuid4().hex[:6]
    with TouchpathClient(kafka_bootstrap, options=ClientOptions(topic=topic)) as client:
        deliveries = [client.emit(touchpoint_event(n, run)) for n in range(300)]
        batch = client.emit_batch([touchpoint_event(n, run) for n in range(300, 400)])
        assert client.flush(30) == 0
    assert batch.wait(1)
    assert batch.acknowledged == 100
    receipts = [delivery.result(1) for delivery in deliveries]
    records = read_topic(kafka_bootstrap, topic)
    counts = Counter(value["event_id"] for _, value, _ in records)
    assert sorted(counts) == sorted(f"{run}-{n}" for n in range(400))
    assert max(counts.values()) == 1
    assert all(key == value["customer_id"] for key, value, _ in records)
    partitions_of: dict[str, set[int]] = {}
    for key, _, partition in records:
        partitions_of.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_of.values())
    assert {(r.topic, r.partition) for r in receipts} <= {(topic, p) for p in range(PARTITIONS)}


def test_http_accepted_events_arrive_exactly_once_and_rejected_ones_never(
    kafka_bootstrap: str, model: JourneyModel
) -> None:
    """Events an answer counts as accepted are in the topic once; rejected ones never are."""
    topic = new_topic(kafka_bootstrap, "ingest")
    run = uuid.uuid4().hex[:6]
    sink = KafkaSink(TouchpathClient(kafka_bootstrap, options=ClientOptions(topic=topic)), ack_timeout_s=10)
    authenticator = RequestAuthenticator({"it": SECRET.encode()})
    accepted: list[str] = []
    rejected: list[str] = []
    try:
        with TestClient(create_app(sink, authenticator, registry=model.registry)) as client:
            for request in range(8):
                events = [touchpoint_event(request * 25 + n, run) for n in range(25)]
                for bad in events[request % 5 :: 7]:
                    bad["touchpoint"] = "web.nowhere"
                ndjson = request % 2 == 1
                body = b"\n".join(map(orjson.dumps, events)) if ndjson else orjson.dumps(events)
                content_type = "application/x-ndjson" if ndjson else "application/json"
                headers = {"Content-Type": content_type, **signed_headers("it", SECRET, body)}
                response = client.post("/v1/events", content=body, headers=headers)
                assert response.status_code in {202, 400}
                refused = {error["index"] for error in response.json().get("errors", [])}
                assert response.json()["accepted"] == len(events) - len(refused)
                for index, event in enumerate(events):
                    (rejected if index in refused else accepted).append(event["event_id"])
    finally:
        sink.close()
    records = read_topic(kafka_bootstrap, topic)
    counts = Counter(value["event_id"] for _, value, _ in records)
    assert sorted(counts) == sorted(accepted)
    assert max(counts.values()) == 1
    assert rejected
    assert not set(rejected) & set(counts)
    assert all(key == value["customer_id"] for key, value, _ in records)
