"""Replay from a real Kafka topic: the same projections as the live run, and a time range by offsets."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from kafka_broker import create_topic

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.sim.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.kafka


def _key(line: bytes) -> bytes | None:
    try:
        return str(orjson.loads(line)["customer_id"]).encode()
    except (orjson.JSONDecodeError, KeyError):
        return None  # a corrupt line: any partition will do


def test_kafka_replay_reproduces_the_live_run_and_honours_the_time_range(
    kafka_bootstrap: str, tmp_path: Path, model: JourneyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every record of the topic replayed with the live journeys gives the live projections (bad lines
    quarantined again); --from starts at the first record at or after that time."""
    simulation = simulate(model, SimulationConfig(customers=250, days=10, seed=33, bad_rate=0.003))
    lines = simulation.lines
    topic = f"touchpath-replay-{uuid.uuid4().hex[:10]}"
    create_topic(kafka_bootstrap, topic, 3)
    # Record timestamps one millisecond apart from a recent start, in the order the lines arrived.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    start_ms = int(start.timestamp() * 1000)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for i, line in enumerate(lines):
            producer.send(topic, key=_key(line), value=line, timestamp_ms=start_ms + i)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = str(tmp_path / "data")
    assert main(["run", "--input", str(events), "--data-dir", data_dir]) == 0
    replay = ["replay", "--source", "kafka", "--bootstrap", kafka_bootstrap, "--topic", topic,
              "--journeys", str(example_journeys()), "--data-dir", data_dir, "--json"]  # fmt: skip
    capsys.readouterr()
    assert main([*replay, "--scenario", "from-kafka"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["events"] == len(lines)
    assert stats["quarantined"] == simulation.bad
    assert main(["compare", "live", "from-kafka", "--json", "--data-dir", data_dir]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["differences"] == 0
    assert result["quarantined"] == {"base": simulation.bad, "scenario": simulation.bad}

    half = len(lines) // 2
    later = (start + timedelta(milliseconds=half)).isoformat().replace("+00:00", "Z")
    assert main([*replay, "--scenario", "second-half", "--from", later]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == len(lines) - half

    assert main([*replay, "--scenario", "nowhere", "--topic", f"{topic}-missing"]) == 1
    assert f"topic '{topic}-missing' does not exist" in capsys.readouterr().err
