"""`touchpath bench stream`: the worker's throughput against a plain consumer, and event-to-row latency."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from events.errors import TouchpathError
from projections.journeys import JourneyModel
from streams.bench.engine import simulated_lines
from streams.common.topics import TopicNames, TopicPlan, ensure_topics
from streams.sim.simulator import SimulationConfig, simulate

REPO = Path(__file__).resolve().parents[2]
LOCAL_KAFKA = REPO / "deploy" / "kafka" / "local.sh"


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """TOUCHPATH_KAFKA_BOOTSTRAP, or a throwaway local broker started with deploy/kafka/local.sh."""
    existing = os.environ.get("TOUCHPATH_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    if not LOCAL_KAFKA.exists():
        msg = "set TOUCHPATH_KAFKA_BOOTSTRAP (deploy/kafka/local.sh is only in a source checkout)"
        raise TouchpathError(msg)
    data = tempfile.mkdtemp(prefix="touchpath-bench-kafka-")
    env = {**os.environ, "TOUCHPATH_KAFKA_DATA": data}
    env.pop("TOUCHPATH_KAFKA_PORT", None)
    try:
        started = subprocess.run(
            [str(LOCAL_KAFKA), "start"], env=env, capture_output=True, text=True, check=False
        )
        line = next(
            (x for x in started.stdout.splitlines() if x.startswith("TOUCHPATH_KAFKA_BOOTSTRAP=")), None
        )
        if started.returncode != 0 or line is None:
            raise TouchpathError(f"could not start a local Kafka broker:\n{started.stderr[-2000:]}")
        yield line.split("=", 1)[1]
    finally:
        subprocess.run([str(LOCAL_KAFKA), "stop"], env=env, capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)


def _produce(bootstrap: str, topic: str, lines: list[bytes], rate: float | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, batch_size=512 * 1024)
    started = time.perf_counter()
    for count, line in enumerate(lines):
        try:
            key = str(orjson.loads(line).get("customer_id") or "?").encode()
        except orjson.JSONDecodeError:  # the simulator corrupts a few lines on purpose
            key = b"?"
        producer.send(topic, key=key, value=line)
        if rate is not None:
            ahead = count / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()


def _raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    """A plain kafka-python consumer reading the whole topic and doing nothing: the ceiling."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    seen = 0
    started = time.perf_counter()
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for records in consumer.poll(timeout_ms=500, max_records=5000).values():
            seen += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen, elapsed


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except urllib.error.HTTPError as refusal:  # 503 while starting or degraded: same JSON body
        if refusal.code != 503:
            return None
        refused: dict[str, Any] = json.loads(refusal.read())
        return refused
    except OSError:
        return None


def _wait(port: int, events: int, process: subprocess.Popen[bytes], timeout: float) -> tuple[float, float]:
    """(time the first event was seen, time all events were in rows with no lag left)."""
    first: float | None = None
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TouchpathError("the worker exited during the benchmark; see its log")
        health = _health(port)
        now = time.perf_counter()
        if health is not None and health["events_in"] > 0 and first is None:
            first = now
        if health is not None and health["events_in"] >= events and health["lag"] == 0:
            quiet += 1
            if quiet == 1:
                done = now
            if quiet >= 3 and first is not None:
                return first, done
        else:
            quiet = 0
        time.sleep(0.1)
    raise TouchpathError(f"the worker did not catch up within {timeout:.0f} s")


def bench_stream(model: JourneyModel, events: int) -> dict[str, Any]:
    """Pre-load events, measure the raw consume ceiling and the full worker, then latency."""
    lines = simulated_lines(model, events)
    paced = simulate(model, SimulationConfig(customers=1500, days=3, seed=99, bad_rate=0.0)).lines[:8000]
    with kafka_bootstrap() as bootstrap, tempfile.TemporaryDirectory(prefix="touchpath-bench-") as tmp:
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        names = TopicNames.with_prefix(prefix)
        ensure_topics(bootstrap, TopicPlan(partitions=6), names=names)
        print(f"pre-loading {len(lines):,} events into {names.touchpoints} ...", file=sys.stderr)
        _produce(bootstrap, names.touchpoints, lines)
        consumed, raw_s = _raw_consume(bootstrap, names.touchpoints)
        port = _free_port()
        env = {
            **os.environ,
            "TOUCHPATH_KAFKA_BOOTSTRAP": bootstrap,
            "TOUCHPATH_TOPIC_PREFIX": prefix,
            "TOUCHPATH_APP_ID": f"{prefix}touchpath",
            "TOUCHPATH_DATA_DIR": str(Path(tmp) / "data"),
            "TOUCHPATH_PARTITIONS": "6",
            "TOUCHPATH_WEB_PORT": str(port),
            "TOUCHPATH_LOG_LEVEL": "warning",
        }
        log = (Path(tmp) / "worker.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "worker"], env=env, stdout=log, stderr=log
        )
        try:
            print("worker catching up ...", file=sys.stderr)
            first, done = _wait(port, len(lines), process, timeout=3600)
            print(f"paced phase: {len(paced):,} events at 1,000/s for latency ...", file=sys.stderr)
            _produce(bootstrap, names.touchpoints, paced, rate=1000.0)
            _wait(port, len(lines) + len(paced), process, timeout=600)
            health = _health(port) or {}
        finally:
            process.terminate()
            process.wait(60)
    worker_rate = len(lines) / max(done - first, 1e-9)
    raw_rate = consumed / max(raw_s, 1e-9)
    return {
        "events": len(lines),
        "raw_consumer_events_per_s": round(raw_rate),
        "worker_events_per_s": round(worker_rate),
        "worker_to_raw_ratio": round(worker_rate / raw_rate, 3),
        "latency_ms_p50": health.get("latency_ms_p50"),
        "latency_ms_p99": health.get("latency_ms_p99"),
        "latency_samples": health.get("latency_samples"),
        # Arrival at the worker -> rows (above) and Kafka timestamp -> arrival (here): both together
        # are what a paced event waited end to end.
        "waited_in_kafka_ms_p50": health.get("waited_in_kafka_ms_p50"),
        "waited_in_kafka_ms_p99": health.get("waited_in_kafka_ms_p99"),
        "paced_rate_events_per_s": 1000,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
