"""touchpath erase --kafka against a running worker: the customer's journey state is forgotten,
in memory, in the worker's later records and after a kill -9."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from projections import schema
from streams.cli.main import main
from streams.common.topics import TopicNames, partition_for
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.worker.control import loader_pending
from streams.worker.records import Kind, Record, decode, erased_key, is_batch_record
from streams.worker.states import recover_partition
from tests.conftest import online_journey
from tests.integration.streaming import WorkerProcess, produce_lines

pytestmark = pytest.mark.kafka

PARTITIONS = 2
TARGET = "erase-me-live"
OTHERS = [f"keep-{n}" for n in range(6)]


def _records(bootstrap: str, topic: str, partition: int) -> list[tuple[int, Record]]:
    """Every journey-events record of a partition, decoded, with its offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out: list[tuple[int, Record]] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend((r.offset, decode(r.value)) for r in batch if r.value and is_batch_record(r.value))
        return out
    finally:
        consumer.close()


def _wait_for(
    bootstrap: str, topic: str, partition: int, found: Callable[[Record], bool], worker: WorkerProcess
) -> int:
    """The offset of the first record of the partition that `found` accepts (waits for it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for offset, record in _records(bootstrap, topic, partition):
            if found(record):
                return offset
        time.sleep(1.0)
    raise AssertionError(f"no such record on {topic}/{partition}\n{worker.tail()}")


def _instances(record: Record, customer: str) -> list[tuple[int, list[str]]]:
    """(events, path) of the customer's journey_instances rows in a batch record."""
    rows = record.rows.get("journey_instances", [])
    names = ["scenario", "instance_id", "customer_id", "persona", "journey_id", "journey_version", "status",
             "end_reason", "path", "path_event_ids", "events"]  # fmt: skip
    out = []
    for row in rows:
        values = dict(zip(names, row, strict=False))
        if values["customer_id"] == customer:
            out.append((int(values["events"]), list(values["path_event_ids"])))
    return out


def test_erase_with_kafka_makes_a_running_worker_forget_the_customer(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A customer with an open journey is erased while the worker runs: its next event starts a new
    journey (no earlier step), no later record holds the old state, and a worker killed with -9
    and restarted recovers no old state either."""
    prefix = f"gdpr{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    home = partition_for(TARGET.encode(), PARTITIONS)
    old = online_journey(TARGET)[:3]  # an open journey: three steps of five
    lines = [*old, *(line for customer in OTHERS for line in online_journey(customer)[:2])]
    produce_lines(kafka_bootstrap, names, lines, partitions=PARTITIONS)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "worker", PARTITIONS, role="journeys")
    topic = names.journey_events
    try:
        worker.start()
        _wait_for(kafka_bootstrap, topic, home, lambda r: TARGET in r.states, worker)

        store_dir = tmp_path / "store"  # the journeys role keeps no store: erase has its own
        store = ClickHouseProjectionStore.embedded(store_dir)
        store.create_schema()
        store.close()
        for name, value in (("BOOTSTRAP", kafka_bootstrap), ("TOPIC_PREFIX", prefix),
                            ("APP_ID", f"{prefix}touchpath")):  # fmt: skip
            monkeypatch.setenv(
                f"TOUCHPATH_KAFKA_{name}" if name == "BOOTSTRAP" else f"TOUCHPATH_{name}", value
            )
        capsys.readouterr()
        assert main(["erase", "--customer", TARGET, "--kafka", "--data-dir", str(store_dir), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        [[partition, erase_offset]] = report["kafka_erase_records"]
        assert partition == home
        assert report["loader_pending"] == {}

        erased_at = _wait_for(kafka_bootstrap, topic, home, lambda r: erased_key(TARGET) in r.erased, worker)
        again = online_journey(TARGET, start=60)[1]  # the journey's second step, after the erasure
        produce_lines(kafka_bootstrap, names, [again], partitions=PARTITIONS)
        new_at = _wait_for(kafka_bootstrap, topic, home, lambda r: TARGET in r.states and
                           r.next > erase_offset + 1, worker)  # fmt: skip
        records = dict(_records(kafka_bootstrap, topic, home))
        assert all(TARGET.encode() not in state for offset, record in records.items()
                   if erased_at <= offset < new_at for state in record.states.values())  # fmt: skip
        assert _instances(records[new_at], TARGET) == [(1, [f"{TARGET}-2"])], (
            "a new journey, no earlier steps"
        )
        for record in records.values():
            if record.kind is Kind.BATCH and record.first > erase_offset:
                assert all(f"{TARGET}-1".encode() not in state for state in record.states.values())

        worker.kill()
        recovered = recover_partition(kafka_bootstrap, topic, home).states
        assert f"{TARGET}-1".encode() not in recovered[TARGET], "what a restarted worker recovers"
        worker.start()
        third = online_journey(TARGET, start=60)[2]
        produce_lines(kafka_bootstrap, names, [third], partitions=PARTITIONS)
        _wait_for(kafka_bootstrap, topic, home,
                  lambda r: any(e == 2 for e, _ in _instances(r, TARGET)), worker)  # fmt: skip
        final = [r for _, r in _records(kafka_bootstrap, topic, home) if _instances(r, TARGET)][-1]
        assert _instances(final, TARGET) == [(2, [f"{TARGET}-2", f"{TARGET}-3"])]
    finally:
        worker.stop()


def test_erase_with_kafka_says_when_the_loader_has_not_stored_past_the_erase_record(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An embedded store whose worker is stopped behind the erase record: the store is erased, the
    pending partition is named and the exit code is 3; once the loader has stored past the erase
    record, nothing is pending."""
    prefix = f"gdprwait{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    app_id = f"{prefix}touchpath"
    home = partition_for(TARGET.encode(), PARTITIONS)
    produce_lines(kafka_bootstrap, names, online_journey(TARGET), partitions=PARTITIONS)
    store_dir = tmp_path / "store"
    store = ClickHouseProjectionStore.embedded(store_dir)
    store.create_schema()
    progress = [("live", app_id, names.touchpoints, p, 1, 1, 0) for p in range(PARTITIONS)]
    store.insert_rows(schema.SINK_PROGRESS, progress)  # the loader stored the first input record
    store.close()
    monkeypatch.setenv("TOUCHPATH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TOUCHPATH_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("TOUCHPATH_APP_ID", app_id)
    capsys.readouterr()
    assert main(["erase", "--customer", TARGET, "--kafka", "--data-dir", str(store_dir)]) == 3
    out = capsys.readouterr().out
    assert f"has not stored the input up to the erase record on partition(s) {home}:" in out
    assert "run the same erase (without --kafka) again" in out
    assert "audit: 1 row(s) in erasure_audit" in out, "the store was erased all the same"

    store = ClickHouseProjectionStore.embedded(store_dir)
    try:
        offset = len(online_journey(TARGET))  # the erase record: after the customer's five events
        assert loader_pending(store, app_id, names.touchpoints, [(home, offset)]) == {home: offset}
        store.insert_rows(schema.SINK_PROGRESS, [("live", app_id, names.touchpoints, home, offset + 1, 2, 0)])
        assert loader_pending(store, app_id, names.touchpoints, [(home, offset)]) == {}
    finally:
        store.close()
