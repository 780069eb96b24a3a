"""Helpers for streaming tests: produce a JSONL file to Kafka, run workers, read projections."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from streams.common.topics import TopicNames, TopicPlan, ensure_topics
from streams.store.clickhouse import ClickHouseProjectionStore

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def produce_lines(bootstrap: str, names: TopicNames, lines: list[bytes], partitions: int = 4) -> int:
    """Send lines to the touchpoints topic keyed by customer_id (as the SDK does)."""
    ensure_topics(bootstrap, TopicPlan(partitions=partitions), names=names)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for line in lines:
        try:
            key = str(orjson.loads(line).get("customer_id") or "?").encode()
        except orjson.JSONDecodeError:
            key = b"?"
        producer.send(names.touchpoints, key=key, value=line)
    producer.flush()
    producer.close()
    return len(lines)


class WorkerProcess:
    """`touchpath worker` in a subprocess with its own topics prefix, app id and data dir."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        data_dir: Path,
        partitions: int = 4,
        extra_env: dict[str, str] | None = None,
        role: str = "all",
        name: str = "worker",
    ) -> None:
        self.port = free_port()
        self.role = role
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.partitions = partitions
        self.env = {
            **os.environ,
            "TOUCHPATH_KAFKA_BOOTSTRAP": bootstrap,
            "TOUCHPATH_TOPIC_PREFIX": prefix,
            "TOUCHPATH_APP_ID": f"{prefix}touchpath",
            "TOUCHPATH_DATA_DIR": str(data_dir),
            "TOUCHPATH_PARTITIONS": str(partitions),
            "TOUCHPATH_WEB_PORT": str(self.port),
            "TOUCHPATH_LOG_LEVEL": os.environ.get("TOUCHPATH_TEST_WORKER_LOG_LEVEL", "warning"),
            "TOUCHPATH_SESSION_TIMEOUT_S": "8",  # a killed worker's partitions move on quickly
            **(extra_env or {}),
        }
        self.log_path = data_dir.parent / f"{prefix}{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the worker process (logs go to a file beside the data dir)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "worker", "--role", self.role],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=log,
        )

    def health(self) -> dict[str, Any] | None:
        """The worker's /health answer (200 or, starting or degraded, 503), or None while it is not
        serving."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                body: dict[str, Any] = json.loads(answer.read())
                return body
        except urllib.error.HTTPError as refusal:
            if refusal.code != 503:
                raise
            refused: dict[str, Any] = json.loads(refusal.read())
            return refused
        except OSError:
            return None

    def wait_idle(self, events: int, timeout: float = 240.0) -> dict[str, Any]:
        """Wait until the worker owns every input partition, has read `events` input messages and
        has processed every input and derived message (no lag), three polls in a row.

        Processed, not committed: Faust's commit can stay behind after restarts; a later restart
        then re-reads those messages, which changes nothing (that is what the tests check).
        """
        deadline = time.monotonic() + timeout
        quiet = 0
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.health()
            if (
                last is not None
                and last["events_in"] >= events
                and last["lag"] == 0  # -1: not ready
                and last["assigned"] == self.partitions
            ):
                quiet += 1
                if quiet >= 3:
                    return last
            else:
                quiet = 0
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.tail()}")
            time.sleep(1.0)
        raise AssertionError(f"worker not idle after {timeout} s: {last}\n{self.tail()}")

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM and wait; kill -9 if it does not stop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self) -> str:
        """The end of the worker's log."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is pid (Linux /proc): a `--role all` worker's loader process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def is_running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def projection_content(data_dir: Path) -> dict[str, Any]:
    """What a user would compare: the live projections without row versions."""
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        queries = {
            "instances": "SELECT instance_id, customer_id, persona, journey_id, status, end_reason, path, "
            "path_event_ids, cost, fitness FROM journey_instances FINAL ORDER BY instance_id",
            "deviations": "SELECT instance_id, idx, kind, step, touchpoint, event_ids, cost "
            "FROM deviations FINAL ORDER BY instance_id, idx",
            "friction": "SELECT instance_id, idx, signal_id, touchpoint, kind, weight "
            "FROM friction_signals FINAL ORDER BY instance_id, idx",
            "support": "SELECT support_event_id, upstream_touchpoint, rule FROM support_attribution FINAL "
            "ORDER BY support_event_id",
            "events": "SELECT count(), uniqExact(event_id) FROM touchpoint_events FINAL",
            "event_rows_written": "SELECT count() FROM touchpoint_events",
            "bad": "SELECT reason, count() FROM bad_events FINAL GROUP BY reason ORDER BY reason",
        }
        return {name: store.query(sql)[1] for name, sql in queries.items()}
    finally:
        store.close()
