"""Events produced with another partitioner than Kafka's default still give `touchpath run`'s results
on two journey workers: no customer is folded by two workers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.common.topics import TopicNames, TopicPlan, ensure_topics
from streams.sim.simulator import SimulationConfig, simulate
from tests.integration.streaming import WorkerProcess, projection_content

pytestmark = pytest.mark.kafka

PARTITIONS = 4


def _produce_round_robin(bootstrap: str, names: TopicNames, lines: list[bytes]) -> None:
    """Keyed by customer_id as the SDK does, but on partition i % 4 for the i-th line (explicit
    partition numbers, like a producer with its own partitioner): one customer's events land on
    every partition, so on both journey workers."""
    ensure_topics(bootstrap, TopicPlan(partitions=PARTITIONS), names=names)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for number, line in enumerate(lines):
        try:
            key = str(orjson.loads(line).get("customer_id") or "?").encode()
        except orjson.JSONDecodeError:
            key = b"?"
        producer.send(names.touchpoints, key=key, value=line, partition=number % PARTITIONS)
    producer.flush()
    producer.close()


def _wait(workers: list[WorkerProcess], done: Any, what: str, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Poll every worker's /health until done(answers) holds three times in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    answers: list[dict[str, Any] | None] = []
    while quiet < 3:
        tails = "\n".join(worker.tail() for worker in workers)
        assert time.monotonic() < deadline, f"not {what} after {timeout} s: {answers}\n{tails}"
        for worker in workers:
            assert worker.process is not None
            assert worker.process.poll() is None, f"worker exited: {worker.tail()}"
        answers = [worker.health() for worker in workers]
        quiet = quiet + 1 if all(a is not None for a in answers) and done(answers) else 0
        time.sleep(1.0)
    return [a for a in answers if a is not None]


def test_events_on_the_wrong_partitions_give_runs_results_on_two_workers(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path
) -> None:
    """Every customer's events spread over all four partitions, two journey workers owning two each
    and one loader: the misplaced records are re-routed to their customer's partition, and the
    projections equal `touchpath run` on the same lines (a customer folded by both workers would show
    as extra, partial journeys).

    The whole history is loaded at once, so a re-routed event arrives after its home partition has
    read up to two months ahead of it: the journey file allows that much lateness here (with the
    shipped 30 days such an event is quarantined as too_late, as the README says)."""
    lines = simulate(model, SimulationConfig(customers=150, days=6, seed=53, bad_rate=0.01)).lines
    journeys = tmp_path / "journeys.yaml"
    shipped = example_journeys().read_text()
    assert "allowed_lateness: 30d" in shipped
    journeys.write_text(shipped.replace("allowed_lateness: 30d", "allowed_lateness: 400d"))
    prefix = f"part{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    ensure_topics(kafka_bootstrap, TopicPlan(partitions=PARTITIONS), names=names)
    data_dir = tmp_path / "data"
    env = {"TOUCHPATH_JOURNEYS": str(journeys)}
    loader = WorkerProcess(
        kafka_bootstrap, prefix, data_dir, PARTITIONS, extra_env=env, role="loader", name="loader"
    )
    journey_workers = [
        WorkerProcess(
            kafka_bootstrap,
            prefix,
            data_dir,
            PARTITIONS,
            extra_env=env,
            role="journeys",
            name=f"journeys-{n}",
        )
        for n in range(2)
    ]
    workers = [*journey_workers, loader]
    for worker in workers:
        worker.start()
    try:
        _wait(
            workers,
            lambda a: (
                [x["status"] for x in a] == ["ok", "ok", "ok"] and [x["assigned"] for x in a] == [2, 2, 0]
            ),
            "sharing the partitions",
        )
        _produce_round_robin(kafka_bootstrap, names, lines)
        answers = _wait(
            workers,
            lambda a: (
                sum(x["events_in"] for x in a) >= len(lines) + sum(x["rerouted"] for x in a)
                and all(x["lag"] == 0 for x in a)
            ),
            "idle",
        )
    finally:
        for worker in workers:
            worker.stop()

    assert all(answer["events_in"] > answer["rerouted"] > 0 for answer in answers[:2])  # both folded
    streamed = projection_content(data_dir)
    source = tmp_path / "input.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    embedded_dir = tmp_path / "embedded"
    assert (
        main(["run", "--input", str(source), "--journeys", str(journeys), "--data-dir", str(embedded_dir)])
        == 0
    )
    embedded = projection_content(embedded_dir)
    for name in ("instances", "deviations", "friction", "support", "bad"):
        assert sorted(streamed[name]) == sorted(embedded[name]), name
    # (count, distinct event ids): every event stored once.
    assert streamed["events"] == embedded["events"]
    assert sum(a["rerouted"] for a in answers) > len(lines) // 2  # 3 in 4 lines were misplaced
