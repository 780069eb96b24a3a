"""Kafka + Faust is the same system as `touchpath run`, and loses or doubles nothing under kill -9."""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.topics import TopicNames
from streams.sim.simulator import SimulationConfig, simulate
from tests.integration.streaming import WorkerProcess, produce_lines, projection_content

pytestmark = pytest.mark.kafka


def _run_embedded(lines: list[bytes], tmp_path: Path) -> dict[str, object]:
    source = tmp_path / "input.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = tmp_path / "embedded"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir)]) == 0
    return projection_content(data_dir)


def _same_projections(streamed: dict[str, object], embedded: dict[str, object]) -> None:
    for name in ("instances", "deviations", "friction", "support", "events", "bad"):
        assert streamed[name] == embedded[name], name


def test_streaming_equals_the_embedded_run(kafka_bootstrap: str, model: JourneyModel, tmp_path: Path) -> None:
    """The same input (duplicates, late and corrupt lines) through Kafka + Faust and through
    `touchpath run` gives identical instances, costs, deviations, friction and attribution."""
    lines = simulate(model, SimulationConfig(customers=300, days=10, seed=31, bad_rate=0.01)).lines
    prefix = f"eq{uuid.uuid4().hex[:8]}."
    produce_lines(kafka_bootstrap, TopicNames.with_prefix(prefix), lines)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "streamed")
    worker.start()
    try:
        health = worker.wait_idle(len(lines))
    finally:
        worker.stop()
    assert health["bad"] > 0
    _same_projections(projection_content(tmp_path / "streamed"), _run_embedded(lines, tmp_path))


def _crash_input(model: JourneyModel, events: int, customers: int) -> list[bytes]:
    """About `events` simulated events folded onto `customers` customer ids."""
    simulation = simulate(model, SimulationConfig(customers=events // 8, days=28, seed=77, bad_rate=0.0005))
    out = []
    for line in simulation.lines[:events]:
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        number = int(str(body.get("customer_id", "cust-0")).rsplit("-", 1)[-1])
        body["customer_id"] = f"cust-{number % customers:05d}"
        out.append(orjson.dumps(body))
    return out


@pytest.mark.parametrize("engine", ["python", "native"])
def test_kill_9_loses_and_doubles_nothing(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path, engine: str
) -> None:
    """100,000 events over 2,000 customers; the worker (on either engine, TOUCHPATH_ENGINE) is
    killed -9 at random moments and restarted; afterwards every event is there exactly once and
    every customer's projections equal `run`'s.
    Three kills by default; TOUCHPATH_CRASH_KILLS=10 for the long version."""
    kills = int(os.environ.get("TOUCHPATH_CRASH_KILLS", "3"))
    lines = _crash_input(model, 100_000, 2_000)
    prefix = f"crash{uuid.uuid4().hex[:8]}."
    produce_lines(kafka_bootstrap, TopicNames.with_prefix(prefix), lines)
    data_dir = tmp_path / "streamed"
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir, extra_env={"TOUCHPATH_ENGINE": engine})
    rng = random.Random(5)
    try:
        for _ in range(kills):
            worker.start()
            time.sleep(rng.uniform(6.0, 14.0))  # start-up is ~4 s: die mid-stream
            worker.kill()
        worker.start()
        worker.wait_idle(0, timeout=600)
    finally:
        worker.stop()
    streamed = projection_content(data_dir)
    embedded = _run_embedded(lines, tmp_path)
    ((count, distinct),) = streamed["events"]  # type: ignore[misc]
    ((expected, _),) = embedded["events"]  # type: ignore[misc]
    lost, duplicated = expected - distinct, count - distinct
    written = streamed["event_rows_written"]
    print(f"kill -9 x{kills}: lost {lost}, duplicated {duplicated}, event rows written {written}")
    assert (lost, duplicated) == (0, 0)
    _same_projections(streamed, embedded)


def test_offsets_committed_past_unfolded_events_are_read_back(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path
) -> None:
    """Faust can commit input offsets it never handed to the agent (rebalance races). The worker
    keeps the next offset it must fold per partition with its state, so when the consumer group
    starts later than that, the skipped records are read back and nothing is lost."""
    lines = simulate(model, SimulationConfig(customers=200, days=6, seed=43, bad_rate=0.01)).lines
    half = len(lines) // 2
    prefix = f"gap{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    produce_lines(kafka_bootstrap, names, lines[:half])
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "streamed")
    worker.start()
    try:
        worker.wait_idle(half)
    finally:
        worker.stop()
    produce_lines(kafka_bootstrap, names, lines[half:])
    skipped = _commit_ahead(kafka_bootstrap, f"{prefix}touchpath", names.touchpoints, by=25)
    worker.start()
    try:
        health = worker.wait_idle(len(lines) - half - skipped)
    finally:
        worker.stop()
    # At least the skipped records were read back (Faust's own reordering can add more).
    assert skipped == 4 * 25
    assert health["gaps_filled"] >= skipped
    _same_projections(projection_content(tmp_path / "streamed"), _run_embedded(lines, tmp_path))


def _commit_ahead(bootstrap: str, group: str, topic: str, by: int) -> int:
    """Move the stopped worker's committed input offsets `by` records forward on every partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ahead = {}
        for tp in partitions:
            committed = consumer.committed(tp)
            assert committed is not None
            ahead[tp] = OffsetAndMetadata(committed + by, "", -1)
        consumer.commit(ahead)
    finally:
        consumer.close()
    return by * len(partitions)
