"""Journey workers share the input partitions with a separate loader, and lose or double nothing
when one of them is killed -9 and its partitions move (rebalances)."""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from projections.journeys import JourneyModel
from streams.common.topics import TopicNames
from tests.integration.streaming import WorkerProcess, produce_lines, projection_content
from tests.integration.test_streaming import _crash_input, _run_embedded, _same_projections

pytestmark = pytest.mark.kafka

PARTITIONS = 6


def _wait_shared(journeys: list[WorkerProcess], loader: WorkerProcess, timeout: float = 600.0) -> None:
    """Until the journey workers own every input partition between them, nothing is left to fold
    or to load, and every journey worker's timeouts run on the same (the whole input's) event time,
    three polls in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    last: list[dict[str, Any] | None] = []
    while time.monotonic() < deadline:
        last = [worker.health() for worker in [*journeys, loader]]
        ready = all(health is not None and health["lag"] == 0 for health in last)
        owned = sum(int(health["assigned"]) for health in last[:-1] if health is not None)
        times = {health["event_time"] for health in last[:-1] if health is not None}
        quiet = quiet + 1 if ready and owned == PARTITIONS and len(times) == 1 else 0
        if quiet >= 3:
            return
        for worker in [*journeys, loader]:
            if worker.process is not None and worker.process.poll() is not None:
                raise AssertionError(f"{worker.role} worker exited: {worker.tail()}")
        time.sleep(1.0)
    raise AssertionError(f"not idle after {timeout} s: {last}\n{loader.tail()}")


def test_journey_workers_and_a_loader_lose_and_double_nothing_across_kills_and_rebalances(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path
) -> None:
    """Two journey workers (three with TOUCHPATH_ROLES_WORKERS=3) and one loader on 6 partitions;
    a random journey worker is killed -9 at random moments and restarted (each time its partitions
    move to the others and back); afterwards every event is stored once and every projection
    equals `run`'s. TOUCHPATH_ROLES_EVENTS and TOUCHPATH_ROLES_KILLS size the long version."""
    workers = int(os.environ.get("TOUCHPATH_ROLES_WORKERS", "2"))
    events = int(os.environ.get("TOUCHPATH_ROLES_EVENTS", "40000"))
    kills = int(os.environ.get("TOUCHPATH_ROLES_KILLS", "2"))
    lines = _crash_input(model, events, events // 50)
    prefix = f"roles{uuid.uuid4().hex[:8]}."
    produce_lines(kafka_bootstrap, TopicNames.with_prefix(prefix), lines, partitions=PARTITIONS)
    data_dir = tmp_path / "streamed"
    loader = WorkerProcess(kafka_bootstrap, prefix, data_dir, PARTITIONS, role="loader", name="loader")
    journeys = [
        WorkerProcess(kafka_bootstrap, prefix, data_dir, PARTITIONS, role="journeys", name=f"journeys-{n}")
        for n in range(workers)
    ]
    rng = random.Random(7)
    try:
        loader.start()
        for worker in journeys:
            worker.start()
        for _ in range(kills):
            time.sleep(rng.uniform(8.0, 16.0))  # start-up and a rebalance take a few seconds
            victim = rng.choice(journeys)
            victim.kill()
            victim.start()
        _wait_shared(journeys, loader)
    finally:
        for worker in [*journeys, loader]:
            worker.stop()
    streamed = projection_content(data_dir)
    embedded = _run_embedded(lines, tmp_path)
    ((count, distinct),) = streamed["events"]  # type: ignore[misc]
    ((expected, _),) = embedded["events"]  # type: ignore[misc]
    lost, duplicated = expected - distinct, count - distinct
    print(f"{workers} journey workers, kill -9 x{kills}: lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0)
    _same_projections(streamed, embedded)
