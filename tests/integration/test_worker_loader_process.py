"""`--role all` loads in a child process: it dies with a killed worker, and a crashed one is restarted."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.topics import TopicNames
from streams.sim.simulator import SimulationConfig, simulate
from tests.integration.streaming import (
    WorkerProcess,
    child_pids,
    is_running,
    produce_lines,
    projection_content,
)

pytestmark = pytest.mark.kafka

TABLES = ("instances", "deviations", "friction", "support", "events", "bad")


def _run_embedded(lines: list[bytes], tmp_path: Path) -> dict[str, Any]:
    source = tmp_path / "input.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = tmp_path / "embedded"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir)]) == 0
    return projection_content(data_dir)


def _wait_for(what: str, check: Any, worker: WorkerProcess, timeout: float = 120.0) -> Any:
    """Poll check() until it returns something truthy (a wait with a deadline, not a timed claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s\n{worker.tail()}")


def _loader_of(worker: WorkerProcess) -> int:
    """The pid of the worker's one loader process (once it is there)."""
    assert worker.process is not None
    parent = worker.process.pid

    def loaders() -> list[int]:
        # Beside it, multiprocessing's resource tracker (it exits when its pipe closes).
        return [pid for pid in child_pids(parent) if b"spawn_main" in _command_line(pid)]

    children = _wait_for("the loader process started", loaders, worker)
    assert len(children) == 1, children
    return int(children[0])


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _check_equal_to_run(data_dir: Path, lines: list[bytes], tmp_path: Path) -> None:
    streamed = projection_content(data_dir)
    embedded = _run_embedded(lines, tmp_path)
    ((count, distinct),) = streamed["events"]
    ((expected, _),) = embedded["events"]
    assert (expected - distinct, count - distinct) == (0, 0)  # lost, duplicated
    for name in TABLES:
        assert streamed[name] == embedded[name], name


def test_the_loader_process_dies_with_a_killed_worker_and_a_restarted_one_loads_the_rest(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path
) -> None:
    """kill -9 of a `--role all` worker takes its loader process with it (no orphan keeps chDB's data
    dir locked); the restarted worker's loader opens the data dir without a crash and loads the rest:
    nothing lost or doubled, projections equal `run`."""
    lines = simulate(model, SimulationConfig(customers=1500, days=14, seed=23, bad_rate=0.002)).lines
    half = len(lines) // 2
    prefix = f"lp{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    produce_lines(kafka_bootstrap, names, lines[:half])
    data_dir = tmp_path / "streamed"
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir)
    worker.start()
    try:
        worker.wait_idle(half)
        loader = _loader_of(worker)
        produce_lines(kafka_bootstrap, names, lines[half:])
        worker.kill()  # while the second half streams in
        _wait_for("the orphaned loader process gone", lambda: not is_running(loader), worker)
        worker.start()
        health = worker.wait_idle(0, timeout=600)
        assert _loader_of(worker) != loader
    finally:
        worker.stop()
    assert health["agent_crashes"] == 0, health["last_crashes"]  # the data dir was free
    assert health["status"] == "ok"
    _check_equal_to_run(data_dir, lines, tmp_path)


def test_a_killed_loader_process_is_named_on_health_and_restarted_and_loses_nothing(
    kafka_bootstrap: str, model: JourneyModel, tmp_path: Path
) -> None:
    """kill -9 of the loader process alone (say the OOM killer): /health turns `degraded` and names
    the loader in last_crashes, the worker starts a new loader process, and it loads everything once."""
    lines = simulate(model, SimulationConfig(customers=1500, days=14, seed=29, bad_rate=0.002)).lines
    half = len(lines) // 2
    prefix = f"lk{uuid.uuid4().hex[:8]}."
    names = TopicNames.with_prefix(prefix)
    produce_lines(kafka_bootstrap, names, lines[:half])
    data_dir = tmp_path / "streamed"
    worker = WorkerProcess(kafka_bootstrap, prefix, data_dir)
    worker.start()
    try:
        worker.wait_idle(half)
        loader = _loader_of(worker)
        produce_lines(kafka_bootstrap, names, lines[half:])
        os.kill(loader, signal.SIGKILL)  # the worker's child, not another's
        health = worker.wait_idle(len(lines), timeout=600)
        replacement = _loader_of(worker)
    finally:
        worker.stop()
    assert replacement != loader
    assert health["status"] == "degraded"
    assert health["agent_crashes"] == 1
    assert health["last_crashes"][0]["agent"] == "loader"
    assert "code -9" in health["last_crashes"][0]["error"]
    _check_equal_to_run(data_dir, lines, tmp_path)
