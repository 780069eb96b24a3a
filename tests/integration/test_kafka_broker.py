"""Round-trip 1,000 keyed messages through a real broker: each once, each key on one partition."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka_broker import create_topic

from streams.common.topics import partition_for

pytestmark = pytest.mark.kafka

MESSAGES = 1_000
PARTITIONS = 3
# Several keys per partition, so "same key, same partition" is tested for shared partitions too.
KEYS = 37
READ_DEADLINE_S = 30.0


def key_for(seq: int) -> str:
    return f"key-{seq % KEYS}"


def test_keyed_messages_arrive_once_and_keys_stick_to_a_partition(kafka_bootstrap: str) -> None:
    topic = f"touchpath-it-{uuid.uuid4().hex[:12]}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)

    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        # Retries without idempotence may legitimately duplicate; exactly-once is asserted.
        enable_idempotence=True,
        linger_ms=5,
    )
    try:
        pending = {
            seq: producer.send(topic, key=key_for(seq).encode(), value=str(seq).encode())
            for seq in range(MESSAGES)
        }
        producer.flush(timeout=30)
        acked_partition = {seq: int(sent.get(timeout=30).partition) for seq, sent in pending.items()}
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end_offsets: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        assert sum(end_offsets.values()) == MESSAGES

        received: list[tuple[str, int, int]] = []  # (key, seq, partition) in read order
        deadline = time.monotonic() + READ_DEADLINE_S
        while any(consumer.position(tp) < end for tp, end in end_offsets.items()):
            assert time.monotonic() < deadline, f"only {len(received)} of {MESSAGES} read in time"
            for tp, records in consumer.poll(timeout_ms=500).items():
                received.extend((r.key.decode(), int(r.value.decode()), tp.partition) for r in records)
    finally:
        consumer.close()

    counts = Counter(seq for _, seq, _ in received)
    assert sorted(counts) == list(range(MESSAGES)), "some messages never arrived"
    assert [seq for seq, n in counts.items() if n > 1] == [], "some messages arrived more than once"

    partitions_of_key: defaultdict[str, set[int]] = defaultdict(set)
    seqs_of_key: defaultdict[str, list[int]] = defaultdict(list)
    for key, seq, partition in received:
        assert key == key_for(seq)
        assert partition == acked_partition[seq]
        partitions_of_key[key].add(partition)
        seqs_of_key[key].append(seq)
    assert {key: parts for key, parts in partitions_of_key.items() if len(parts) > 1} == {}
    # The worker rebuilds each partition's progress from customer ids: it must place a key where
    # the producer's partitioner did.
    assert {key: partition_for(key.encode(), PARTITIONS) for key in partitions_of_key} == {
        key: next(iter(parts)) for key, parts in partitions_of_key.items()
    }
    assert len(partitions_of_key) == KEYS
    # Keys really were spread out; otherwise the per-key check above proves little.
    assert set().union(*partitions_of_key.values()) == set(range(PARTITIONS))
    # One partition per key plus an idempotent producer means per-key send order is kept.
    assert all(seqs == sorted(seqs) for seqs in seqs_of_key.values())
