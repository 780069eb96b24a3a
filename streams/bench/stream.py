"""`touchpath bench stream`: raw consumer, trivial Faust agent and worker on one topic; messages, latency."""

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
from streams.common.settings import Settings
from streams.common.topics import TopicNames, TopicPlan, ensure_topics
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

REPO = Path(__file__).resolve().parents[2]
LOCAL_KAFKA = REPO / "deploy" / "kafka" / "local.sh"
PARTITIONS = 6


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


def _key(line: bytes) -> bytes:
    try:
        return str(orjson.loads(line).get("customer_id") or "?").encode()
    except orjson.JSONDecodeError:  # the simulator corrupts a few lines on purpose
        return b"?"


def _produce(bootstrap: str, topic: str, lines: list[bytes], rate: float | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, batch_size=512 * 1024)
    started = time.perf_counter()
    for count, line in enumerate(lines):
        producer.send(topic, key=_key(line), value=line)
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


def _trivial_faust(bootstrap: str, topic: str, events: int, prefix: str, tmp: Path) -> tuple[float, float]:
    """(events/s, events per CPU-second) of a Faust agent that only counts what take_events hands
    it: Faust's own ceiling."""
    result = tmp / "trivial.json"
    command = [
        sys.executable, "-m", "streams.bench.trivial_faust", bootstrap, topic, str(events),
        f"{prefix}trivial", str(tmp / "trivial-faust"), str(result), str(_free_port()),
    ]  # fmt: skip
    with (tmp / "trivial.log").open("wb") as log:
        process = subprocess.run(command, stdout=log, stderr=log, timeout=3600, check=False, cwd=REPO)
    if not result.exists():
        raise TouchpathError(
            f"the trivial Faust agent failed (exit {process.returncode}); see {tmp / 'trivial.log'}"
        )
    figures = orjson.loads(result.read_bytes())
    events_done = float(figures["events"])
    return events_done / max(float(figures["seconds"]), 1e-9), events_done / max(float(figures["cpu"]), 1e-9)


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except urllib.error.HTTPError as refusal:  # 503 while starting or degraded: same JSON body
        if refusal.code != 503:
            return None
        refused: dict[str, Any] = json.loads(refusal.read())
        return refused
    except OSError:
        return None


class _Fleet:
    """The worker processes of one bench: one all-in-one worker, or N journey workers and a loader."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path, workers: int) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        base = {
            **os.environ,
            "TOUCHPATH_KAFKA_BOOTSTRAP": bootstrap,
            "TOUCHPATH_TOPIC_PREFIX": prefix,
            "TOUCHPATH_APP_ID": f"{prefix}touchpath",
            "TOUCHPATH_DATA_DIR": str(self.data_dir),
            "TOUCHPATH_PARTITIONS": str(PARTITIONS),
            "TOUCHPATH_LOG_LEVEL": "warning",
        }
        self.cpu: dict[str, float] = {}
        roles = ["all"] if workers == 1 else ["loader"] + ["journeys"] * workers
        self.members: list[tuple[str, int, subprocess.Popen[bytes]]] = []
        for number, role in enumerate(roles):
            port = _free_port()
            env = {**base, "TOUCHPATH_WEB_PORT": str(port)}
            log = (tmp / f"worker-{number}-{role}.log").open("wb")
            command = [sys.executable, "-m", "streams.cli.main", "worker", "--role", role]
            self.members.append(
                (role, port, subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=REPO))
            )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each role's members have used so far (every thread, and their child processes:
        the loader process of `--role all`; Linux /proc)."""
        ticks: dict[str, int] = {}
        stats = _proc_stats()
        for role, _, process in self.members:
            for pid in _with_descendants(process.pid, stats):
                fields = stats.get(pid)
                if fields is not None:
                    ticks[role] = ticks.get(role, 0) + int(fields[11]) + int(fields[12])  # utime, stime
        return {role: count / os.sysconf("SC_CLK_TCK") for role, count in ticks.items()}

    def figures(self) -> tuple[int, int, int, dict[str, Any]]:
        """(events folded, lag, input partitions owned, the loading member's /health; with journey
        processes, the waited_in_kafka figures are the slowest journey member's)."""
        events = lag = owned = 0
        loading: dict[str, Any] = {}
        waited: dict[str, float] = {}  # journey members measure arrival; the loader does not
        for role, port, process in self.members:
            if process.poll() is not None:
                raise TouchpathError(f"a {role} worker exited during the benchmark; logs in {self.tmp}")
            health = _health(port)
            if health is None or health["lag"] < 0:
                return events, -1, owned, loading
            events += health["events_in"]
            lag += health["lag"]
            owned += health["assigned"]
            if role in ("all", "loader"):
                loading = health
            for name in ("waited_in_kafka_ms_p50", "waited_in_kafka_ms_p99"):
                if role == "journeys" and health.get(name) is not None:
                    waited[name] = max(waited.get(name, 0.0), float(health[name]))
        return events, lag, owned, {**loading, **waited}

    def wait(self, events: int, timeout: float) -> tuple[float, float, dict[str, Any]]:
        """(when the first event was folded, when all were in rows with no lag left, last health);
        cpu holds the members' CPU seconds between those two moments."""
        first: float | None = None
        done = 0.0
        cpu_first: dict[str, float] = {}
        quiet = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            folded, lag, owned, loading = self.figures()
            now = time.perf_counter()
            if folded > 0 and first is None:
                first, cpu_first = now, self.cpu_seconds()
            if folded >= events and lag == 0 and owned == PARTITIONS:
                quiet += 1
                if quiet == 1:
                    done = now
                    self.cpu = {role: s - cpu_first.get(role, 0.0) for role, s in self.cpu_seconds().items()}
                if quiet >= 3 and first is not None:
                    return first, done, loading
            else:
                quiet = 0
            time.sleep(0.1)
        raise TouchpathError(f"the workers did not catch up within {timeout:.0f} s; logs in {self.tmp}")

    def stop(self) -> None:
        """SIGTERM every member and wait."""
        for _, _, process in self.members:
            process.terminate()
        for _, _, process in self.members:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name (field 3 onward)."""
    out: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited meanwhile
    return out


def _with_descendants(pid: int, stats: dict[int, list[str]]) -> list[int]:
    """pid and every live process below it (by parent pid, field 4)."""
    found, frontier = [pid], [pid]
    while frontier:
        parents = set(frontier)
        frontier = [child for child, fields in stats.items() if int(fields[1]) in parents]
        found.extend(frontier)
    return found


def _produced(bootstrap: str, prefix: str, names: TopicNames) -> dict[str, int]:
    """Records written so far to every topic of this bench except the input (derived, quarantine,
    alerts and Faust's own topics): what the worker produced."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        out: dict[str, int] = {}
        for topic in sorted(consumer.topics()):
            if not topic.startswith(prefix) or topic == names.touchpoints or "trivial" in topic:
                continue
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            out[topic] = sum(consumer.end_offsets(tps).values())
        return out
    finally:
        consumer.close()


def _event_id(raw: bytes | str) -> str | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    event_id = body.get("event_id") if isinstance(body, dict) else None
    return event_id if isinstance(event_id, str) else None


def _lost_and_duplicated(data_dir: Path, lines: list[bytes]) -> tuple[int, int]:
    """Input events neither stored nor quarantined (lost), and event rows stored more than once."""
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        _, rows = store.query("SELECT event_id, count() FROM touchpoint_events FINAL GROUP BY event_id")
        _, quarantined = store.query("SELECT raw FROM bad_events FINAL")
    finally:
        store.close()
    stored = {str(event_id): int(count) for event_id, count in rows}
    seen = set(stored) | {_event_id(raw) for (raw,) in quarantined}
    expected = {event_id for event_id in map(_event_id, lines) if event_id is not None}
    return len(expected - seen), sum(count - 1 for count in stored.values())


def bench_stream(model: JourneyModel, events: int, workers: int = 1) -> dict[str, Any]:
    """Pre-load events; measure the raw consumer, a trivial Faust agent and the worker(s) on that
    topic; count produced records; then p50/p99 event-to-row latency at 1,000 events/s."""
    load_before = os.getloadavg()[0]
    lines = simulated_lines(model, events)
    paced = simulate(model, SimulationConfig(customers=1500, days=3, seed=99, bad_rate=0.0)).lines[:8000]
    with kafka_bootstrap() as bootstrap, tempfile.TemporaryDirectory(prefix="touchpath-bench-") as tmp_name:
        tmp = Path(tmp_name)
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        names = TopicNames.with_prefix(prefix)
        ensure_topics(bootstrap, TopicPlan(partitions=PARTITIONS), names=names)
        print(f"pre-loading {len(lines):,} events into {names.touchpoints} ...", file=sys.stderr)
        _produce(bootstrap, names.touchpoints, lines)
        consumed, raw_s = _raw_consume(bootstrap, names.touchpoints)
        print("trivial Faust agent ...", file=sys.stderr)
        trivial_rate, trivial_cpu_rate = _trivial_faust(bootstrap, names.touchpoints, len(lines), prefix, tmp)
        print(f"worker ({workers} journey process(es)) catching up ...", file=sys.stderr)
        fleet = _Fleet(bootstrap, prefix, tmp, workers)
        try:
            first, done, _ = fleet.wait(len(lines), timeout=3600)
            worker_cpu_rate = len(lines) / max(sum(fleet.cpu.values()), 1e-9)
            cpu_by_role = {role: round(seconds, 1) for role, seconds in fleet.cpu.items()}
            produced = _produced(bootstrap, prefix, names)
            print(f"paced phase: {len(paced):,} events at 1,000/s for latency ...", file=sys.stderr)
            _produce(bootstrap, names.touchpoints, paced, rate=1000.0)
            _, _, health = fleet.wait(len(lines) + len(paced), timeout=600)
        finally:
            fleet.stop()
        lost, duplicated = _lost_and_duplicated(fleet.data_dir, lines + paced)
    worker_rate = len(lines) / max(done - first, 1e-9)
    raw_rate = consumed / max(raw_s, 1e-9)
    messages = sum(produced.values())
    return {
        "events": len(lines),
        "journey_workers": workers,
        "engine": Settings().engine,  # the journey workers' (TOUCHPATH_ENGINE, which they inherit)
        "loader": Settings().loader if workers == 1 else "process",  # --role all's (TOUCHPATH_LOADER)
        "load_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # at start and at end
        "raw_consumer_events_per_s": round(raw_rate),
        "trivial_faust_events_per_s": round(trivial_rate),
        "worker_events_per_s": round(worker_rate),
        "worker_to_trivial_faust_ratio": round(worker_rate / trivial_rate, 3),
        "worker_to_raw_ratio": round(worker_rate / raw_rate, 3),
        # The same per CPU-second (every thread of the processes): what a shared machine's load
        # does not move much.
        "trivial_faust_events_per_cpu_s": round(trivial_cpu_rate),
        "worker_events_per_cpu_s": round(worker_cpu_rate),
        "worker_to_trivial_faust_cpu_ratio": round(worker_cpu_rate / trivial_cpu_rate, 3),
        "worker_cpu_seconds_by_role": cpu_by_role,
        "messages_produced": messages,
        "messages_per_input_event": round(messages / len(lines), 4),
        "messages_by_topic": {topic.removeprefix(prefix): count for topic, count in produced.items()},
        "latency_ms_p50": health.get("latency_ms_p50"),
        "latency_ms_p99": health.get("latency_ms_p99"),
        "latency_samples": health.get("latency_samples"),
        # Arrival at the worker -> rows (above) and Kafka timestamp -> arrival (here): both together
        # are what a paced event waited end to end.
        "waited_in_kafka_ms_p50": health.get("waited_in_kafka_ms_p50"),
        "waited_in_kafka_ms_p99": health.get("waited_in_kafka_ms_p99"),
        "paced_rate_events_per_s": 1000,
        "lost": lost,
        "duplicated": duplicated,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
