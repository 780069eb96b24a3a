"""A worker's first start on a new broker: no agent crash, /health goes starting -> ok, JSON logs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.common.topics import TopicNames
from tests.integration.kafka_broker import new_kafka_broker
from tests.integration.streaming import WorkerProcess, produce_lines
from tests.integration.test_alerts_embedded import spike_input

pytestmark = pytest.mark.kafka


def _watch_until_idle(worker: WorkerProcess, events: int, timeout: float = 240.0) -> list[dict[str, Any]]:
    """Every /health answer from the worker's start until it has folded `events` and has no lag
    (three answers in a row)."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3:
        assert time.monotonic() < deadline, f"not idle after {timeout} s: {answers[-1:]}\n{worker.tail()}"
        assert worker.process is not None
        assert worker.process.poll() is None, f"worker exited: {worker.tail()}"
        answer = worker.health()
        if answer is not None:
            answers.append(answer)
            idle = answer["status"] == "ok" and answer["events_in"] >= events and answer["lag"] == 0
            quiet = quiet + 1 if idle else 0
        time.sleep(0.2)
    return answers


def test_the_first_start_on_a_new_broker_crashes_no_agent_and_health_goes_starting_then_ok(
    tmp_path: Path,
) -> None:
    """A broker that has never seen a consumer group or a topic (this start creates them, after
    Faust's producer read the metadata): the journey agent writes its batches and quarantined records
    without crashing, /health says `starting` (never `ok` before the partitions are assigned and
    their state recovered) and then `ok`, and every line the worker logs, Faust's and aiokafka's
    included, is a JSON object."""
    prefix = f"first{uuid.uuid4().hex[:8]}."
    lines = spike_input(tmp_path / "spike.jsonl").read_bytes().splitlines()
    with new_kafka_broker() as bootstrap:
        produce_lines(bootstrap, TopicNames.with_prefix(prefix), lines)
        at_info = {"TOUCHPATH_LOG_LEVEL": "info"}
        worker = WorkerProcess(bootstrap, prefix, tmp_path / "data", extra_env=at_info)
        worker.start()
        try:
            answers = _watch_until_idle(worker, len(lines))
        finally:
            worker.stop()

    statuses = [answer["status"] for answer in answers]
    first_ok = statuses.index("ok")
    assert statuses[0] == "starting"
    assert set(statuses[:first_ok]) == {"starting"}
    assert set(statuses[first_ok:]) == {"ok"}
    assert all(a["assigned"] == worker.partitions and a["lag"] >= 0 for a in answers[first_ok:])
    assert answers[-1]["agent_crashes"] == 0
    log_lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert log_lines  # at info level the worker and Faust say something
    records = [orjson.loads(line) for line in log_lines]  # raises on any line that is not JSON
    # aiokafka logs a new broker's missing group coordinator as an error while it retries; what
    # must not appear is a crash.
    crashes = [r for r in records if r["event"] == "worker.agent_crashed" or "Crashed" in r["event"]]
    assert not crashes
    assert {r.get("logger", "").split(".")[0] for r in records} >= {"faust"}
