"""A paused broker (SIGSTOP): HTTP ingest answers 503 and loses no 2xx event; the SDK spool resends."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka_broker import LOCAL_SH, create_topic
from test_ingest_kafka import read_topic, touchpoint_event

from events.sdk import ClientOptions, TouchpathClient
from projections.journeys import JourneyModel
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import KafkaSink, create_app

pytestmark = pytest.mark.kafka

SECRET = "outage-secret-0123456789"
# Short producer timeouts so a paused broker shows up within seconds, not minutes.
IMPATIENT = ClientOptions(
    request_timeout_s=2.0,
    delivery_timeout_s=60.0,
    max_block_s=2.0,
    retry_interval_s=0.5,
    spool_fsync_interval_s=0.0,
)


def _with_topic(topic: str) -> ClientOptions:
    return dataclasses.replace(IMPATIENT, topic=topic)


@pytest.fixture(scope="module")
def own_broker() -> Iterator[tuple[str, int]]:
    """A broker of this module alone (never the shared one is paused): (bootstrap, pid)."""
    data_dir = Path(tempfile.mkdtemp(prefix="touchpath-outage-kafka-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"TOUCHPATH_KAFKA_PORT", "TOUCHPATH_KAFKA_CONTROLLER_PORT"}
    }
    env["TOUCHPATH_KAFKA_DATA"] = str(data_dir)
    pid = 0
    try:
        started = subprocess.run(
            [str(LOCAL_SH), "start"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        lines = [
            line for line in started.stdout.splitlines() if line.startswith("TOUCHPATH_KAFKA_BOOTSTRAP=")
        ]
        assert started.returncode == 0, started.stderr[-2000:]
        assert lines, started.stdout
        pid = int((data_dir / "kafka.pid").read_text())
        yield lines[0].split("=", 1)[1], pid
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        subprocess.run([str(LOCAL_SH), "stop"], env=env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP the broker for the block; SIGCONT always follows."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _post(client: TestClient, events: list[dict[str, Any]]) -> int:
    body = orjson.dumps(events)
    headers = {"Content-Type": "application/json", **signed_headers("ops", SECRET, body)}
    status: int = client.post("/v1/events", content=body, headers=headers).status_code
    return status


def test_paused_broker_gives_503s_and_every_2xx_event_is_in_the_topic(
    own_broker: tuple[str, int], model: JourneyModel
) -> None:
    """While the broker is frozen requests get 503 (not a hang, not a 2xx); no 2xx event is lost."""
    bootstrap, pid = own_broker
    topic = f"touchpath-it-outage-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 3)
    run = uuid.uuid4().hex[:6]
    sink = KafkaSink(TouchpathClient(bootstrap, options=_with_topic(topic)), ack_timeout_s=1.5)
    authenticator = RequestAuthenticator({"ops": SECRET.encode()})
    statuses: dict[str, list[int]] = {"before": [], "paused": [], "after": []}
    acknowledged: list[str] = []
    counter = iter(range(10_000))

    def send(phase: str) -> None:
        events = [touchpoint_event(next(counter), run) for _ in range(20)]
        status = _post(client, events)
        statuses[phase].append(status)
        if 200 <= status < 300:
            acknowledged.extend(event["event_id"] for event in events)

    try:
        with TestClient(create_app(sink, authenticator, registry=model.registry)) as client:
            for _ in range(5):
                send("before")
            with paused(pid):
                for _ in range(4):
                    send("paused")
            for _ in range(40):  # the producer reconnects after the pause; new events each time
                send("after")
                if statuses["after"][-5:] == [202] * 5:
                    break
    finally:
        sink.close()
    assert statuses["before"] == [202] * 5
    assert statuses["paused"] == [503] * 4
    assert statuses["after"][-5:] == [202] * 5
    counts = Counter(record["event_id"] for _, record, _ in read_topic(bootstrap, topic))
    assert [event_id for event_id in acknowledged if counts[event_id] != 1] == []


def test_spooled_events_survive_a_frozen_broker_and_a_restart(
    own_broker: tuple[str, int], tmp_path: Path
) -> None:
    """Events emitted while the broker is frozen stay spooled through a restart and all arrive later."""
    bootstrap, pid = own_broker
    topic = f"touchpath-it-spool-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 3)
    run = uuid.uuid4().hex[:6]
    spool_dir = tmp_path / "spool"
    client = TouchpathClient(bootstrap, spool_dir=spool_dir, options=_with_topic(topic))
    for n in range(10):
        client.emit(touchpoint_event(n, run))
    assert client.flush(30) == 0
    with paused(pid):
        for n in range(10, 30):
            client.emit(touchpoint_event(n, run))
        assert client.flush(1.0) == 20
        assert client.close(timeout_s=0.5) == 20
    assert list(spool_dir.glob("*.jsonl"))

    restarted = TouchpathClient(bootstrap, spool_dir=spool_dir, options=_with_topic(topic))
    assert restarted.flush(60) == 0
    restarted.close()
    assert list(spool_dir.glob("*.jsonl")) == []
    arrived = {record["event_id"] for _, record, _ in read_topic(bootstrap, topic)}
    assert arrived == {f"{run}-{n}" for n in range(30)}  # resends may repeat; downstream dedupes by event_id
