"""Real Kafka broker for integration tests: $TOUCHPATH_KAFKA_BOOTSTRAP or one run by local.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

BOOTSTRAP_ENV = "TOUCHPATH_KAFKA_BOOTSTRAP"
LOCAL_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "local.sh"

# Generous because the very first start also downloads the broker jars with maven;
# local.sh itself gives up on an unresponsive broker after 60 s.
_START_TIMEOUT_S = 600.0
_STOP_TIMEOUT_S = 60.0
# A developer's own broker settings must not leak into the throwaway test broker.
_PINNED_PORT_VARS = ("TOUCHPATH_KAFKA_PORT", "TOUCHPATH_KAFKA_CONTROLLER_PORT")


class BrokerStartError(RuntimeError):
    """deploy/kafka/local.sh could not bring a broker up."""


def _local_sh(command: str, env: Mapping[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCAL_SH), command],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _start(env: Mapping[str, str]) -> str:
    result = _local_sh("start", env, _START_TIMEOUT_S)
    prefix = f"{BOOTSTRAP_ENV}="
    for line in result.stdout.splitlines():
        if result.returncode == 0 and line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    raise BrokerStartError(
        f"{LOCAL_SH} start exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


@contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield a bootstrap address; a broker started here is stopped and its data deleted on exit."""
    existing = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if existing:
        yield existing
        return
    with new_kafka_broker() as bootstrap:
        yield bootstrap


@contextmanager
def new_kafka_broker() -> Iterator[str]:
    """A broker that has never seen a topic or a consumer group (for first-start tests), always
    started here, whatever $TOUCHPATH_KAFKA_BOOTSTRAP says; stopped and deleted on exit."""
    data_dir = tempfile.mkdtemp(prefix="touchpath-kafka-new-")
    env = {key: value for key, value in os.environ.items() if key not in _PINNED_PORT_VARS}
    env["TOUCHPATH_KAFKA_DATA"] = data_dir
    try:
        yield _start(env)
    finally:
        # Also runs after a failed or timed-out start: stop is a no-op when nothing runs.
        _local_sh("stop", env, _STOP_TIMEOUT_S)
        shutil.rmtree(data_dir, ignore_errors=True)


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create `name` with `partitions` partitions unless it exists; wait until all have leaders."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="touchpath-tests")
    try:
        try:
            # Replication factor left to the broker default (1 on the local broker).
            admin.create_topics({name: {"num_partitions": partitions}}, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            admin.wait_for_topics([name])
        described: list[dict[str, object]] = admin.describe_topics([name])
        existing = described[0]["partitions"]
        if not isinstance(existing, list) or len(existing) != partitions:
            count = len(existing) if isinstance(existing, list) else existing
            raise ValueError(f"topic {name!r} already exists with {count} partitions, wanted {partitions}")
    finally:
        admin.close()
