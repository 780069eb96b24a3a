"""Benchmark of emitting: a raw kafka-python producer, the SDK and HTTP ingest on the same events."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer import KafkaConsumer

from events.codec import check_event
from events.errors import Rejection, TouchpathError
from events.sdk import ClientOptions, TouchpathClient
from projections.journeys import JourneyModel
from streams.bench.engine import simulated_lines
from streams.ingest.auth import signed_headers

LOCAL_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "local.sh"
BOOTSTRAP_ENV = "TOUCHPATH_KAFKA_BOOTSTRAP"
PARTITIONS = 6
_PINNED_PORT_VARS = ("TOUCHPATH_KAFKA_PORT", "TOUCHPATH_KAFKA_CONTROLLER_PORT")


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """$TOUCHPATH_KAFKA_BOOTSTRAP, or a throwaway broker started with deploy/kafka/local.sh."""
    existing = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if existing:
        yield existing
        return
    if not LOCAL_SH.exists():
        msg = f"no broker: set {BOOTSTRAP_ENV}=host:port (deploy/kafka/local.sh is not at {LOCAL_SH})"
        raise TouchpathError(msg)
    data_dir = tempfile.mkdtemp(prefix="touchpath-bench-kafka-")
    env = {key: value for key, value in os.environ.items() if key not in _PINNED_PORT_VARS}
    env["TOUCHPATH_KAFKA_DATA"] = data_dir
    print("starting a throwaway Kafka broker (deploy/kafka/local.sh) ...", file=sys.stderr)
    try:
        result = subprocess.run(
            [str(LOCAL_SH), "start"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith(f"{BOOTSTRAP_ENV}=")]
        if result.returncode != 0 or not lines:
            msg = f"{LOCAL_SH} start exited {result.returncode}: {result.stderr[-2000:]}"
            raise TouchpathError(msg)
        yield lines[0].split("=", 1)[1].strip()
    finally:
        subprocess.run([str(LOCAL_SH), "stop"], env=env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


def valid_events(model: JourneyModel, count: int) -> list[tuple[bytes, bytes]]:
    """(key, one-line JSON) of `count` simulated events the registry accepts, unique event ids."""
    pairs: list[tuple[bytes, bytes]] = []
    seen: set[str] = set()
    for line in simulated_lines(model, int(count * 1.1) + 100):
        event = check_event(line)
        if isinstance(event, Rejection) or model.registry.check(event) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        pairs.append((event.customer_id.encode(), line))
        if len(pairs) == count:
            break
    return pairs


def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="touchpath-bench")
    try:
        admin.create_topics({name: {"num_partitions": PARTITIONS} for name in names}, wait_for_metadata=True)
    finally:
        admin.close()


def _messages_in(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        offsets: dict[TopicPartition, int] = consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(PARTITIONS)]
        )
        return sum(offsets.values())
    finally:
        consumer.close()


def run_raw(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """(events/s, CPU µs/event) of a plain kafka-python producer with the SDK's settings: the baseline."""
    producer = KafkaProducer(**ClientOptions().producer_config(bootstrap))
    try:
        producer.partitions_for(topic)
        started, cpu = time.perf_counter(), time.process_time()
        for key, value in pairs:
            producer.send(topic, value=value, key=key)
        producer.flush(timeout=120)
        return _rates(len(pairs), started, cpu)
    finally:
        producer.close(timeout=10)


def _rates(events: int, started: float, cpu: float) -> tuple[float, float]:
    # process_time() counts every thread of this process (the producer's sender thread too).
    return events / (time.perf_counter() - started), (time.process_time() - cpu) / events * 1e6


def run_sdk(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """(events/s, CPU µs/event) of TouchpathClient.emit, validation included, until all are acknowledged."""
    client = TouchpathClient(bootstrap, options=ClientOptions(topic=topic))
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for _, value in pairs:
            client.emit(value)
        left = client.flush(timeout_s=120)
        rates = _rates(len(pairs), started, cpu)
    finally:
        client.close(timeout_s=10)
    if left:
        msg = f"SDK bench: {left} events were not acknowledged"
        raise TouchpathError(msg)
    return rates


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def child_server(command: str, extra_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """`touchpath <command>` serving HTTP in a child process; yields its base URL and pid, stops it after."""
    port = free_port()
    env = {**os.environ, **extra_env, "TOUCHPATH_INGEST_PORT": str(port), "TOUCHPATH_LOG_LEVEL": "warning"}
    argv = [sys.executable, "-m", "streams.cli.main", *command.split()]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(command, url, process, errors)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def ingest_server(bootstrap: str, topic: str, key_id: str, secret: str) -> Iterator[tuple[str, int]]:
    """`touchpath ingest` in a child process writing to `topic`; yields its base URL and pid."""
    env = {
        BOOTSTRAP_ENV: bootstrap,
        "TOUCHPATH_INGEST_KEYS": f"{key_id}:{secret}",
        "TOUCHPATH_INGEST_RATE_LIMIT": "0",
        "TOUCHPATH_INGEST_HOST": "127.0.0.1",
    }
    with child_server(f"ingest --topic {topic}", env) as served:
        yield served


def _wait_healthy(command: str, url: str, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            msg = f"touchpath {command} exited {process.returncode}: {errors.read().decode()[-2000:]}"
            raise TouchpathError(msg)
        with suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    msg = f"touchpath {command} at {url} did not become healthy within 60 s"
    raise TouchpathError(msg)


def server_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _post_all(
    url: str, bodies: list[bytes], key: tuple[str, str], concurrency: int
) -> tuple[float, list[float], int]:
    # The standard library's client, one keep-alive connection per thread: it costs the shared
    # machine ~4 µs of CPU per event where an async httpx client costs ~14 (measured here).
    host, _, port = url.removeprefix("http://").partition(":")
    pending = iter(bodies)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                headers = {"Content-Type": "application/json", **signed_headers(key[0], key[1], body)}
                started = time.perf_counter()
                connection.request("POST", "/v1/events", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                with lock:
                    latencies.append(time.perf_counter() - started)
                    failures[0] += response.status != 202
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, name=f"bench-client-{n}") for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, failures[0]


def run_http(
    url: str, pairs: list[tuple[bytes, bytes]], batch: int, concurrency: int, *, key: tuple[str, str]
) -> tuple[float, list[float], int]:
    """Events/s through signed JSON-array requests of `batch` events; latencies; non-202 answers."""
    bodies = [
        b"[" + b",".join(value for _, value in pairs[i : i + batch]) + b"]"
        for i in range(0, len(pairs), batch)
    ]
    elapsed, latencies, failures = _post_all(url, bodies, key, concurrency)
    return len(pairs) / elapsed, latencies, failures


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank; 0 for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def bench_ingest(
    model: JourneyModel, events: int, *, batch: int = 100, concurrency: int = 4, rounds: int = 3
) -> dict[str, Any]:
    """Events/s of raw producer, SDK and HTTP ingest on the same events, as ratios, and HTTP latency.

    The methods take turns for `rounds` rounds and each keeps its best round, which damps the noise
    of a shared machine; CPU µs per event (of the producing process, or the ingest server) is
    reported beside it because it hardly depends on what else runs.
    """
    pairs = valid_events(model, events)
    key = ("bench", secrets.token_hex(32))
    run_id = uuid.uuid4().hex[:8]
    topics = {method: f"touchpath-bench-{run_id}-{method}" for method in ("raw", "sdk", "http")}
    rates: dict[str, list[float]] = {method: [] for method in topics}
    cpu: dict[str, list[float]] = {method: [] for method in topics}
    latencies: list[float] = []
    failures = 0
    load_before = os.getloadavg()[0]
    with kafka_bootstrap() as bootstrap:
        _create_topics(bootstrap, list(topics.values()))
        with ingest_server(bootstrap, topics["http"], *key) as (url, pid):
            # Warm-up: connections, metadata and the server's code paths, outside the measurement.
            run_http(url, pairs[: batch * 4], max(1, batch // 2), concurrency, key=key)
            for _ in range(rounds):
                for method, run in (("raw", run_raw), ("sdk", run_sdk)):
                    rate, cpu_us = run(bootstrap, topics[method], pairs)
                    rates[method].append(rate)
                    cpu[method].append(cpu_us)
                server_cpu = server_cpu_s(pid)
                rate, round_latencies, round_failures = run_http(url, pairs, batch, concurrency, key=key)
                cpu["http"].append((server_cpu_s(pid) - server_cpu) / len(pairs) * 1e6)
                rates["http"].append(rate)
                latencies.extend(round_latencies)
                failures += round_failures
        delivered = {method: _messages_in(bootstrap, topic) for method, topic in topics.items()}
    best = {method: max(values) for method, values in rates.items()}
    least = {method: min(values) for method, values in cpu.items()}
    return {
        "events": len(pairs),
        "http_batch": batch,
        "http_concurrency": concurrency,
        "rounds": rounds,
        "raw_producer_events_per_s": round(best["raw"]),
        "sdk_events_per_s": round(best["sdk"]),
        "http_ingest_events_per_s": round(best["http"]),
        "sdk_ratio_to_raw": round(best["sdk"] / best["raw"], 2),
        "http_ratio_to_raw": round(best["http"] / best["raw"], 2),
        "http_request_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "http_request_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "http_non_202_answers": failures,
        "raw_cpu_us_per_event": round(least["raw"], 1),
        "sdk_cpu_us_per_event": round(least["sdk"], 1),
        "http_server_cpu_us_per_event": round(least["http"], 1),
        "sdk_ratio_to_raw_by_cpu": round(least["raw"] / least["sdk"], 2),
        "http_ratio_to_raw_by_cpu": round(least["raw"] / least["http"], 2) if least["http"] else 0.0,
        "raw_events_per_s_each_round": [round(value) for value in rates["raw"]],
        "sdk_events_per_s_each_round": [round(value) for value in rates["sdk"]],
        "http_events_per_s_each_round": [round(value) for value in rates["http"]],
        "in_topic_raw_sdk_http": [delivered["raw"], delivered["sdk"], delivered["http"]],
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
