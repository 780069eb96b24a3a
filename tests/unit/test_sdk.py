"""The Python SDK: validation before sending, keys, delivery outcomes, and the durable spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.partitioner.default import DefaultPartitioner

from events.errors import BadEventError, BadReason
from events.sdk import ClientOptions, Delivery, DeliveryError, KafkaUnavailableError, TouchpathClient
from events.spool import Spool, SpoolError
from projections.journeys import JourneyModel
from streams.common.topics import TOUCHPOINTS


class _Metadata:
    """The cluster as the producer sees it: six partitions per known topic."""

    def __init__(self, topics: set[str]) -> None:
        self.known = topics

    def topics(self) -> set[str]:
        return self.known

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(6)) if topic in self.known else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions_for_topic(topic) or set()


class FakeProducer:
    """Stands in for KafkaProducer: records sends; acknowledges, fails or holds them as told."""

    def __init__(self, mode: str = "ack", **config: Any) -> None:
        self.mode = mode
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.partitions: list[int | None] = []
        self.held: list[Future] = []
        self._metadata = _Metadata({config.get("topic", TOUCHPOINTS), TOUCHPOINTS})
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> Future:
        future = Future()
        self.sent.append((topic, key, value))
        self.partitions.append(partition)
        if self.mode == "ack":
            future.success(_Record(topic, len(self.sent) - 1))
        elif self.mode == "fail":
            future.failure(KafkaTimeoutError("Batch expired"))
        else:
            self.held.append(future)
        return future

    def release(self, succeed: bool = True) -> None:
        for offset, future in enumerate(self.held):
            if succeed:
                future.success(_Record(TOUCHPOINTS, offset))
            else:
                future.failure(KafkaTimeoutError("Batch expired"))
        self.held = []

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class _Record:
    def __init__(self, topic: str, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset


class Factory:
    """A producer factory whose producers behave as `mode` says; 'down' raises like an absent broker."""

    def __init__(self, mode: str = "ack") -> None:
        self.mode = mode
        self.producers: list[FakeProducer] = []

    def __call__(self, **config: Any) -> FakeProducer:
        if self.mode == "down":
            raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")
        producer = FakeProducer(self.mode, **config)
        self.producers.append(producer)
        return producer


FAST = ClientOptions(retry_interval_s=0.05, spool_fsync_interval_s=0.0)


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(n: int, customer: str = "c-1", touchpoint: str = "web.product_page") -> dict[str, Any]:
    """A valid event e-<n>, n minutes after T0; the channel is the touchpoint's prefix."""
    return {
        "event_id": f"e-{n}",
        "customer_id": customer,
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
        "channel": touchpoint.split(".", maxsplit=1)[0],
        "touchpoint": touchpoint,
    }


def test_topic_name_matches_the_streams_topic() -> None:
    """The SDK writes to the same topic the streaming worker reads."""
    assert ClientOptions().topic == TOUCHPOINTS


def test_producer_is_idempotent_acks_all_batched_and_compressed() -> None:
    """The producer settings are the durable ones the issue asks for."""
    factory = Factory()
    TouchpathClient("kafka:9092", producer_factory=factory).close()
    config = factory.producers[0].config
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["linger_ms"] > 0
    assert config["batch_size"] >= 16384
    assert config["compression_type"] == "lz4"


def test_invalid_event_raises_naming_the_field_and_nothing_is_sent() -> None:
    """A bad event is refused before it reaches Kafka, and the error says which field."""
    factory = Factory()
    with TouchpathClient("kafka:9092", producer_factory=factory) as client:
        with pytest.raises(BadEventError) as raised:
            client.emit({**event(1), "occurred_at": "2026-03-02T09:00:00"})
        assert raised.value.rejection.field == "occurred_at"
        with pytest.raises(BadEventError) as unknown:
            client.emit({**event(2), "colour": "red"})
        assert unknown.value.rejection.field == "colour"
    assert factory.producers[0].sent == []


def test_registry_check_refuses_unknown_touchpoints(model: JourneyModel) -> None:
    """With a registry, an unregistered touchpoint is refused at the source."""
    client = TouchpathClient("kafka:9092", registry=model.registry, producer_factory=Factory())
    with client, pytest.raises(BadEventError) as raised:
        client.emit({**event(1), "touchpoint": "web.nowhere"})
    assert raised.value.rejection.reason is BadReason.UNKNOWN_TOUCHPOINT


def test_events_are_keyed_by_customer_and_deliveries_resolve() -> None:
    """Every form of event is sent once, keyed by customer_id, and its Delivery names the offset."""
    factory = Factory()
    seen: list[Delivery] = []
    with TouchpathClient("kafka:9092", producer_factory=factory, on_delivery=seen.append) as client:
        first = client.emit(event(1, "c-7"))
        second = client.emit(orjson.dumps(event(2, "c-8")))
        pretty = orjson.dumps(event(3, "c-9"), option=orjson.OPT_INDENT_2)
        third = client.emit(pretty)
        assert client.flush(1) == 0
    sent = factory.producers[0].sent
    assert [(topic, key) for topic, key, _ in sent] == [
        (TOUCHPOINTS, b"c-7"),
        (TOUCHPOINTS, b"c-8"),
        (TOUCHPOINTS, b"c-9"),
    ]
    assert all(b"\n" not in value for _, _, value in sent)  # pretty input is sent as one line
    assert [first.result(1).offset, second.result(1).offset, third.result(1).offset] == [0, 1, 2]
    assert [delivery.event_id for delivery in seen] == ["e-1", "e-2", "e-3"]
    assert client.stats.acknowledged == 3


def test_keys_land_on_the_partition_kafkas_default_partitioner_picks() -> None:
    """Each customer's events go to the partition any Kafka client would pick for that key."""
    factory = Factory()
    with TouchpathClient("kafka:9092", producer_factory=factory) as client:
        for n in range(300):
            client.emit(event(n, f"customer-{n % 97}"))
        client.emit_batch([event(n, f"customer-{n}") for n in range(300, 400)])
    producer = factory.producers[0]
    default = DefaultPartitioner()
    expected = [
        default.partition(TOUCHPOINTS, key, key, value, value, producer._metadata)
        for _, key, value in producer.sent
    ]
    assert producer.partitions == expected
    assert len(set(expected)) == 6


def test_unacknowledged_event_fails_its_delivery_without_a_spool() -> None:
    """Without a spool, an event Kafka did not acknowledge is reported, never silently dropped."""
    with TouchpathClient("kafka:9092", producer_factory=Factory("fail")) as client:
        delivery = client.emit(event(1))
        assert client.flush(1) == 0
    with pytest.raises(DeliveryError, match="'e-1' was not acknowledged"):
        delivery.result(1)
    assert client.stats.failed == 1


def test_batch_is_validated_whole_before_anything_is_sent() -> None:
    """emit_batch refuses the whole batch when one event is invalid, naming its position."""
    factory = Factory()
    with TouchpathClient("kafka:9092", producer_factory=factory) as client:
        with pytest.raises(BadEventError, match="event #1 of the batch"):
            client.emit_batch([event(1), {**event(2), "channel": "Web!"}])
        assert factory.producers[0].sent == []
        batch = client.emit_batch([event(3), event(4)])
        assert batch.wait(1)
    assert batch.acknowledged == 2
    assert batch.failures == []


def test_client_without_spool_refuses_to_start_when_kafka_is_unreachable() -> None:
    """Without a spool a client cannot keep events, so an absent broker is an error at start."""
    with pytest.raises(KafkaUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1:1") as raised:
        TouchpathClient("127.0.0.1:1", producer_factory=Factory("down"))
    assert "spool_dir" in str(raised.value)


def test_spooled_events_survive_an_outage_and_a_restart(tmp_path: Path) -> None:
    """Events whose delivery failed stay in the spool and are sent by the next client on that spool."""
    spool_dir = tmp_path / "spool"
    failing = Factory("fail")
    client = TouchpathClient("kafka:9092", spool_dir=spool_dir, producer_factory=failing, options=FAST)
    for n in range(5):
        client.emit(event(n))
    assert client.close(timeout_s=0.2) == 5
    assert sum(len(path.read_bytes().splitlines()) for path in spool_dir.glob("*.jsonl")) == 5

    working = Factory("ack")
    client = TouchpathClient("kafka:9092", spool_dir=spool_dir, producer_factory=working, options=FAST)
    assert client.flush(5) == 0
    client.close()
    resent = [
        orjson.loads(value)["event_id"] for producer in working.producers for _, _, value in producer.sent
    ]
    assert sorted(resent) == [f"e-{n}" for n in range(5)]
    assert list(spool_dir.glob("*.jsonl")) == []


def test_client_with_spool_starts_while_kafka_is_down_and_sends_when_it_returns(tmp_path: Path) -> None:
    """With a spool, emit() works during an outage and the events go out once Kafka is back."""
    factory = Factory("down")
    client = TouchpathClient(
        "kafka:9092", spool_dir=tmp_path / "spool", producer_factory=factory, options=FAST
    )
    deliveries = [client.emit(event(n)) for n in range(3)]
    assert client.unacknowledged() == 3
    assert not any(delivery.done() for delivery in deliveries)
    factory.mode = "ack"
    assert client.flush(5) == 0
    assert [delivery.result(1).topic for delivery in deliveries] == [TOUCHPOINTS] * 3
    client.close()


def test_failed_attempt_is_resent_and_settles_the_same_delivery(tmp_path: Path) -> None:
    """With a spool, a failed attempt is retried; the caller's Delivery settles when it succeeds."""
    factory = Factory("hold")
    client = TouchpathClient(
        "kafka:9092", spool_dir=tmp_path / "spool", producer_factory=factory, options=FAST
    )
    delivery = client.emit(event(1))
    producer = factory.producers[0]
    producer.release(succeed=False)
    assert not delivery.done()
    producer.mode = "ack"
    assert client.flush(5) == 0
    assert delivery.result(1).topic == TOUCHPOINTS
    assert client.stats.resent >= 1
    client.close()


def test_spool_directory_is_owned_by_one_process(tmp_path: Path) -> None:
    """A second spool on the same directory is refused with a message saying what to do."""
    first = Spool(tmp_path)
    try:
        with pytest.raises(SpoolError, match="own spool_dir"):
            Spool(tmp_path)
    finally:
        first.close()


def test_spool_ignores_a_torn_last_line_and_rolls_segments(tmp_path: Path) -> None:
    """A half-written record from a crash is not replayed; full segments roll and leave when acknowledged."""
    (tmp_path / "000000000001.jsonl").write_bytes(b'{"a":1}\n{"b":2}\n{"tor')
    spool = Spool(tmp_path, segment_records=2)
    assert spool.unacknowledged() == 2
    taken = spool.take_pending(10)
    assert [raw for _, raw in taken] == [b'{"a":1}', b'{"b":2}']
    refs = [spool.append(f'{{"n":{n}}}'.encode(), in_flight=True) for n in range(3)]
    assert len(spool.segment_files()) == 3
    for ref, _ in taken:
        spool.acknowledge(ref)
    for ref in refs:
        spool.acknowledge(ref)
    assert spool.unacknowledged() == 0
    spool.close()
    assert spool.segment_files() == []
