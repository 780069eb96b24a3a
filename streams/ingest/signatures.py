"""Used request signatures that outlive a restart: in the store (serve) or on a Kafka topic (ingest)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from events.errors import TouchpathError
from streams.store.clickhouse import ClickHouseProjectionStore

log = structlog.get_logger("touchpath.auth")

SIGNATURES_TABLE = "ingest_signatures"
# A row outlives its request's timestamp window by an hour, then ClickHouse's TTL drops it.
SIGNATURES_DDL = f"""CREATE TABLE IF NOT EXISTS {SIGNATURES_TABLE} (
  signature String,
  expires DateTime('UTC')
) ENGINE = ReplacingMergeTree ORDER BY signature TTL expires + INTERVAL 1 HOUR"""


class StoreSignatures:
    """Signatures in a table of the projection store, written before the request is answered.

    For `serve`: one process owns the data dir, so memory decides and the table only has to survive
    restarts. Each accepted request costs one small insert.
    """

    def __init__(self, store: ClickHouseProjectionStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        store.command(SIGNATURES_DDL, what="creating the replay-protection table")

    def load(self, now: int, remember: Callable[[str, int], None]) -> None:
        """Every stored signature whose window is still open."""
        _, rows = self.store.query(
            f"SELECT signature, toUnixTimestamp(max(expires)) FROM {SIGNATURES_TABLE} "
            "WHERE expires >= toDateTime({now:UInt32}, 'UTC') GROUP BY signature",
            {"now": now},
        )
        for signature, expires in rows:
            remember(str(signature), int(expires))

    def record(self, signature: str, expires: int) -> None:
        """Insert (durable when the call returns; raises StoreError otherwise)."""
        with self._lock:
            self.store.command(
                f"INSERT INTO {SIGNATURES_TABLE} (signature, expires) "
                "VALUES ({signature:String}, toDateTime({expires:UInt32}, 'UTC'))",
                {"signature": signature, "expires": expires},
                # a unique token: an equal block inserted earlier must not swallow this one
                {"async_insert": 0, "insert_deduplication_token": uuid.uuid4().hex},
                what="recording the request signature",
            )

    def close(self) -> None:
        """The store is closed by its owner."""


class KafkaSignatures:
    """Signatures on a Kafka topic every `ingest` replica writes (acks=all) and tails.

    A replica records a signature and waits for the broker's acknowledgement before it answers;
    every replica reads the topic from (now - window) at start and follows it, so a request replayed
    after a restart or to another replica is refused. Remaining race: the same request sent to two
    replicas within the time one takes to see the other's record (milliseconds; the follower polls
    every 50 ms) can be taken twice. Both copies carry the same event_ids, which the journey engine
    counts once, so the race can double a request's rate-limit cost, never an event.
    """

    def __init__(self, bootstrap: str, topic: str, window_s: int, replication: int = 1) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.window_s = window_s
        self._ensure_topic(replication)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=0, client_id="touchpath-signatures"
        )
        self._consumer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ensure_topic(self, replication: int) -> None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="touchpath-admin")
        except Exception as error:
            msg = f"cannot reach Kafka at {self.bootstrap} for the replay-protection topic: {error}"
            raise TouchpathError(msg) from error
        try:
            if self.topic not in set(admin.list_topics()):
                retention_ms = (2 * self.window_s + 3600) * 1000
                topic = NewTopic(
                    self.topic,
                    num_partitions=1,
                    replication_factor=replication,
                    topic_configs={"retention.ms": str(retention_ms), "cleanup.policy": "delete"},
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([topic])
        finally:
            admin.close()

    def load(self, now: int, remember: Callable[[str, int], None]) -> None:
        """Read every record of the last window (blocking until caught up), then follow the topic."""
        partition = TopicPartition(self.topic, 0)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
            client_id="touchpath-signatures",
        )
        consumer.assign([partition])
        start = consumer.offsets_for_times({partition: (now - self.window_s - 60) * 1000}).get(partition)
        if start is None:
            consumer.seek_to_end(partition)
        else:
            consumer.seek(partition, start.offset)
        end = consumer.end_offsets([partition])[partition]
        while consumer.position(partition) < end:
            self._apply(consumer.poll(timeout_ms=500), remember)
        self._consumer = consumer
        self._thread = threading.Thread(
            target=self._follow, args=(remember,), daemon=True, name="touchpath-sig"
        )
        self._thread.start()

    def _follow(self, remember: Callable[[str, int], None]) -> None:
        while not self._stop.is_set():
            try:
                self._apply(self._consumer.poll(timeout_ms=200), remember)
            except Exception as error:  # keep following; a broker outage is retried
                log.warning("signatures.follow_failed", problem=str(error))
                self._stop.wait(1.0)

    @staticmethod
    def _apply(batches: dict[Any, list[Any]], remember: Callable[[str, int], None]) -> None:
        for records in batches.values():
            for record in records:
                if record.key and record.value:
                    remember(record.key.decode(), int(record.value))

    def record(self, signature: str, expires: int) -> None:
        """Send and wait for the acknowledgement (raises when Kafka does not confirm in 5 s)."""
        self._producer.send(self.topic, key=signature.encode(), value=str(expires).encode()).get(timeout=5)

    def close(self) -> None:
        """Stop following and close the clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()
        self._producer.close(timeout=5)
