"""Python SDK for product systems: validate touchpoint events and send them to Kafka, optionally spooled."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from events.codec import check_contract, check_event, encode_event, encode_json
from events.errors import BadEventError, Rejection, TouchpathError
from events.model import TouchpointEvent
from events.registry import Registry
from events.spool import Spool, SpoolRef

# Same name as streams.common.topics.TOUCHPOINTS; events/ cannot import streams/ (imports point one way).
TOUCHPOINTS_TOPIC = "touchpoints"

log = logging.getLogger("touchpath.sdk")


class DeliveryError(TouchpathError):
    """Kafka did not acknowledge an event; says which event, where it went and why."""


class KafkaUnavailableError(TouchpathError):
    """The client could not reach Kafka or the topic at start."""


class ClientClosedError(TouchpathError):
    """emit() was called after close()."""


class Receipt(NamedTuple):
    """Where Kafka stored an acknowledged event."""

    topic: str
    partition: int
    offset: int


# Guards the callback lists and waiters of every Delivery and BatchDelivery. Settling happens on the
# producer's one sender thread, so the lock is hardly ever contended; one shared lock keeps each
# in-flight event down to two small objects (a per-event lock, list and closures cost more CPU in
# allocation and garbage collection than the validation itself).
_SETTLE = threading.Lock()


class Delivery:
    """The outcome of one emitted event: a Receipt once Kafka acknowledged it, or a DeliveryError.

    With a spool a failed attempt is not an outcome: the event stays spooled and is resent, and
    the Delivery settles when a later attempt is acknowledged.
    """

    __slots__ = ("_callbacks", "_client", "_error", "_metadata", "_ref", "_settled", "_waiter", "event_id")

    def __init__(self, event_id: str, client: TouchpathClient, ref: SpoolRef | None = None) -> None:
        self.event_id = event_id
        self._client = client
        self._ref = ref
        self._settled = False
        self._metadata: Any = None
        self._error: DeliveryError | None = None
        self._callbacks: list[Callable[[Delivery], None]] | None = None
        self._waiter: threading.Event | None = None

    def done(self) -> bool:
        """True once the event was acknowledged or has failed for good."""
        return self._settled

    def result(self, timeout: float | None = None) -> Receipt:
        """Wait for the outcome: the Receipt, or raise DeliveryError (TimeoutError when still open)."""
        if not self._settled:
            with _SETTLE:
                if not self._settled and self._waiter is None:
                    self._waiter = threading.Event()
                waiter = None if self._settled else self._waiter
            if waiter is not None and not waiter.wait(timeout):
                msg = f"event {self.event_id!r} is not acknowledged yet after {timeout} s"
                raise TimeoutError(msg)
        if self._error is not None:
            raise self._error
        metadata = self._metadata
        return Receipt(metadata.topic, metadata.partition, metadata.offset)

    @property
    def error(self) -> DeliveryError | None:
        """Why the event failed for good, if it did."""
        return self._error

    def add_done_callback(self, callback: Callable[[Delivery], None]) -> None:
        """Call `callback(delivery)` once settled (at once if it is); runs on the producer's thread."""
        with _SETTLE:
            if not self._settled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def _kafka_outcome(self, outcome: Any) -> None:
        """Target of the kafka future: RecordMetadata when acknowledged, the exception when not."""
        self._client._outcome(self, outcome)

    def _settle(self, metadata: Any, error: DeliveryError | None) -> None:
        with _SETTLE:
            if self._settled:
                return
            self._metadata, self._error, self._settled = metadata, error, True
            callbacks, self._callbacks = self._callbacks, None
            waiter = self._waiter
        if waiter is not None:
            waiter.set()
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                log.exception("delivery callback for event %r raised", self.event_id)


class BatchDelivery:
    """The outcome of a batch of emitted events: settled once each was acknowledged or failed.

    `failures` lists (position in the batch, error) of the events that failed for good; with a
    spool failed attempts are resent instead, so the batch settles only when all are acknowledged.
    """

    __slots__ = (
        "_callbacks",
        "_client",
        "_events",
        "_futures",
        "_remaining",
        "_sent_errors",
        "_settled",
        "failures",
        "total",
    )

    def __init__(self, client: TouchpathClient, events: Sequence[tuple[TouchpointEvent, bytes]]) -> None:
        self.total = len(events)
        self.failures: list[tuple[int, DeliveryError]] = []
        self._client = client
        self._events = events
        self._futures: list[Any] = []  # one kafka future per event, None where send() itself failed
        self._sent_errors: dict[int, BaseException] = {}
        self._remaining = self.total
        self._settled = threading.Event()
        self._callbacks: list[Callable[[BatchDelivery], None]] = []
        if self.total == 0:
            self._settled.set()

    def done(self) -> bool:
        """True once every event of the batch has an outcome."""
        return self._settled.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every outcome; False when the timeout passed first."""
        return self._settled.wait(timeout)

    @property
    def acknowledged(self) -> int:
        """Events of the batch acknowledged by Kafka so far."""
        with _SETTLE:
            return self.total - self._remaining - len(self.failures)

    def add_done_callback(self, callback: Callable[[BatchDelivery], None]) -> None:
        """Call `callback(batch)` once settled (at once if it is); runs on the producer's thread."""
        with _SETTLE:
            if not self._settled.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _kafka_outcome(self, outcome: Any) -> None:
        """Target of every kafka future of the batch (one bound method shared by all of them)."""
        with _SETTLE:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._finish()

    def _send_failed(self, position: int, error: BaseException) -> None:
        self._sent_errors[position] = error
        self._kafka_outcome(error)

    def _delivered(self, position: int, delivery: Delivery) -> None:
        if delivery.error is not None:
            self._sent_errors[position] = delivery.error
        self._kafka_outcome(None)

    def _finish(self) -> None:
        errors = dict(self._sent_errors)
        for position, future in enumerate(self._futures):
            if future is not None and future.failed():
                errors[position] = future.exception
        failures = [
            (position, self._client._delivery_error(self._events[position][0].event_id, error))
            for position, error in sorted(errors.items())
        ]
        with _SETTLE:
            self.failures = failures
            self._settled.set()
            callbacks, self._callbacks = self._callbacks, []
        self._client._batch_settled(self)
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("batch delivery callback raised")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Producer and spool tuning; the defaults suit product systems emitting a few thousand events/s."""

    topic: str = TOUCHPOINTS_TOPIC
    linger_ms: int = 5
    batch_size: int = 64 * 1024
    compression: str | None = "lz4"
    connect_timeout_s: float = 10.0  # first contact with the cluster
    max_block_s: float = 10.0  # longest emit() may wait for the topic's metadata
    request_timeout_s: float = 10.0  # one produce request
    delivery_timeout_s: float = 30.0  # acknowledgement of one event, retries included
    retry_interval_s: float = 2.0  # how often spooled events that failed are resent
    spool_segment_records: int = 10_000
    spool_fsync_interval_s: float = 0.1  # 0: fsync on every emit
    client_id: str = "touchpath-sdk"

    def producer_config(self, bootstrap: str) -> dict[str, Any]:
        """kafka-python KafkaProducer settings: acks from all replicas, idempotent, batched, compressed."""
        return {
            "bootstrap_servers": bootstrap,
            "client_id": self.client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": self.compression,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "max_block_ms": int(self.max_block_s * 1000),
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            "delivery_timeout_ms": int(self.delivery_timeout_s * 1000),
        }


@dataclass(slots=True)
class ClientStats:
    """What the client did: emitted = acknowledged + failed + still open (spooled or in flight)."""

    emitted: int = 0
    acknowledged: int = 0
    failed: int = 0  # failed for good (only without a spool)
    attempts_failed: int = 0  # failed attempts of spooled events, each resent later
    resent: int = 0  # sends by the background courier: after a failed attempt, an outage or a restart


class _KeyPartitions:
    """Kafka's default partition of a key (murmur2, as every Kafka client computes it), cached per key.

    kafka-python recomputes it in pure Python on every send; customers send many events, so the
    cache saves a few µs per event. The partition list is re-read every second from the producer's
    metadata, so a topic that grows is followed as soon as the producer knows about it.
    """

    def __init__(self, topic: str, capacity: int = 100_000) -> None:
        self.topic = topic
        self.capacity = capacity
        self._partitions: list[int] = []
        self._cache: dict[bytes, int] = {}
        self._refresh_at = 0.0

    def of(self, producer: Any, key: bytes) -> int | None:
        """The partition for `key`, or None (kafka-python then decides) while metadata is unknown."""
        if time.monotonic() >= self._refresh_at:
            self._refresh(producer)
        partition = self._cache.get(key)
        if partition is None:
            if not self._partitions:
                return None
            if len(self._cache) >= self.capacity:
                self._cache = {}
            partition = self._partitions[(murmur2(key) & 0x7FFFFFFF) % len(self._partitions)]
            self._cache[key] = partition
        return partition

    def _refresh(self, producer: Any) -> None:
        self._refresh_at = time.monotonic() + 1.0
        try:
            # Not producer.partitions_for(): that blocks while the topic is unknown.
            known = producer._metadata.partitions_for_topic(self.topic)
        except AttributeError:
            known = None
        partitions = sorted(known) if known else []
        if partitions != self._partitions:
            self._partitions, self._cache = partitions, {}


def _producer(**config: Any) -> Any:
    return KafkaProducer(**config)


class TouchpathClient:
    """Validates events with the engine's model and sends them to Kafka keyed by customer_id.

    >>> with TouchpathClient("127.0.0.1:9092") as touchpath:
    ...     touchpath.emit({"event_id": "e-1", "customer_id": "c-42", ...})

    An invalid event raises BadEventError (naming the field) before anything is sent. Delivery is
    acks=all and idempotent. With `spool_dir`, every event is first appended to a local spool and
    leaves it only once Kafka acknowledged it: events survive a broker outage and a restart of the
    process, and are resent (downstream dedupes by event_id); the client then starts even while
    Kafka is down. Without a spool, an event Kafka did not acknowledge fails its Delivery.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        spool_dir: str | Path | None = None,
        registry: Registry | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
        options: ClientOptions | None = None,
        producer_factory: Callable[..., Any] = _producer,
    ) -> None:
        self.bootstrap = bootstrap
        self.options = options or ClientOptions()
        self.topic = self.options.topic
        self.registry = registry
        self.on_delivery = on_delivery
        self.stats = ClientStats()
        self._factory = producer_factory
        self._lock = threading.Lock()
        self._closed = False
        self._producer: Any = None
        self._spool: Spool | None = None
        self._parked: dict[SpoolRef, Delivery] = {}
        self._wake = threading.Event()
        self._keys = _KeyPartitions(self.topic)
        self._courier: threading.Thread | None = None
        if spool_dir is None:
            self._producer = self._connect()
            return
        self._spool = Spool(
            Path(spool_dir),
            segment_records=self.options.spool_segment_records,
            fsync_interval_s=self.options.spool_fsync_interval_s,
        )
        self._courier = threading.Thread(target=self._run_courier, name="touchpath-sdk-courier", daemon=True)
        self._courier.start()

    # -- emitting --------------------------------------------------------------------------------
    def emit(self, event: TouchpointEvent | Mapping[str, Any] | bytes) -> Delivery:
        """Validate one event (model, dict or JSON bytes) and send it; raises BadEventError if invalid."""
        checked, raw = self.validate(event)
        return self.emit_validated(checked, raw)

    def validate(self, event: TouchpointEvent | Mapping[str, Any] | bytes) -> tuple[TouchpointEvent, bytes]:
        """The checked event and the one-line JSON bytes that will be sent; raises BadEventError.

        The bytes pass the contract's checks (check_contract: schema, size, nesting depth, and the
        registry when the client has one) exactly as every intake checks what it receives.
        """
        if isinstance(event, TouchpointEvent):
            raw = encode_event(event)
        elif isinstance(event, bytes | bytearray | memoryview):
            raw = bytes(event)
        else:
            encoded = encode_json(dict(event))
            if isinstance(encoded, Rejection):
                raise BadEventError(encoded)
            raw = encoded
        checked = check_contract(raw, registry=self.registry)
        if isinstance(checked, Rejection):
            raise BadEventError(checked)
        if b"\n" in raw or b"\r" in raw:  # the spool and NDJSON consumers need one line per event
            raw = encode_event(checked)
        return checked, raw

    def emit_validated(self, event: TouchpointEvent, raw: bytes) -> Delivery:
        """Send an event already checked by validate() or check_event; raw is its one-line JSON."""
        if self._closed:
            msg = f"emit of event {event.event_id!r} after close(); create a new TouchpathClient"
            raise ClientClosedError(msg)
        key = event.customer_id.encode()
        spool = self._spool
        if spool is None:
            with self._lock:
                self.stats.emitted += 1
            delivery = Delivery(event.event_id, self)
            self._send(raw, key, delivery)
            return delivery
        # Appending and parking under the client's lock: the courier takes pending records under
        # the same lock, so it always finds the caller's Delivery for a record it resends.
        with self._lock:
            self.stats.emitted += 1
            producer = self._producer
            ref = spool.append(raw, in_flight=producer is not None)
            delivery = Delivery(event.event_id, self, ref)
            if producer is None:
                self._parked[ref] = delivery
        if producer is None:
            self._wake.set()
        else:
            self._send(raw, key, delivery)
        return delivery

    def emit_batch(self, events: Sequence[TouchpointEvent | Mapping[str, Any] | bytes]) -> BatchDelivery:
        """Validate every event first (BadEventError names the position; then nothing is sent), send all."""
        checked: list[tuple[TouchpointEvent, bytes]] = []
        for position, event in enumerate(events):
            try:
                checked.append(self.validate(event))
            except BadEventError as error:
                rejection = error.rejection
                detail = f"event #{position} of the batch: {rejection.detail}"
                raise BadEventError(Rejection(rejection.reason, detail, rejection.field)) from error
        return self.emit_validated_batch(checked)

    def emit_validated_batch(self, events: Sequence[tuple[TouchpointEvent, bytes]]) -> BatchDelivery:
        """Send (event, one-line JSON) pairs already checked; one outcome object for all of them."""
        if self._closed:
            msg = f"emit of {len(events)} events after close(); create a new TouchpathClient"
            raise ClientClosedError(msg)
        batch = BatchDelivery(self, events)
        if self._spool is not None:
            for position, (event, raw) in enumerate(events):
                self.emit_validated(event, raw).add_done_callback(partial(batch._delivered, position))
            return batch
        with self._lock:
            self.stats.emitted += len(events)
        producer = self._producer
        send, topic, futures, partition_of = producer.send, self.topic, batch._futures, self._keys.of
        on_outcome = batch._kafka_outcome
        for position, (event, raw) in enumerate(events):
            key = event.customer_id.encode()
            try:
                future = send(topic, value=raw, key=key, partition=partition_of(producer, key))
            except Exception as error:  # metadata unavailable within max_block_s, producer closed, ...
                futures.append(None)
                batch._send_failed(position, error)
                continue
            futures.append(future)
            future.add_both(on_outcome)
        return batch

    def ready(self) -> bool:
        """True when sends cannot block: connected, and the topic's partitions are known."""
        producer = self._producer
        if producer is None:
            return False
        try:
            # kafka-python only blocks in send() to fetch metadata of a topic it has never seen;
            # there is no public non-blocking way to ask whether it has.
            return producer._metadata.partitions_for_topic(self.topic) is not None
        except AttributeError:
            return False

    # -- waiting and closing ---------------------------------------------------------------------
    def unacknowledged(self) -> int:
        """Events not acknowledged by Kafka yet: in flight, or waiting in the spool to be resent."""
        if self._spool is not None:
            return self._spool.unacknowledged()
        stats = self.stats
        return stats.emitted - stats.acknowledged - stats.failed

    def flush(self, timeout_s: float = 30.0) -> int:
        """Send everything now and wait (at most timeout_s) for acknowledgements; returns unacknowledged()."""
        deadline = time.monotonic() + timeout_s
        producer = self._producer
        if producer is not None:
            self._flush_producer(producer, timeout_s)
        if self._spool is not None:
            self._wake.set()
        while self.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.unacknowledged()

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush (at most timeout_s), stop, and release the spool; returns events still unacknowledged.

        Spooled events that are still unacknowledged stay on disk and are resent by the next client
        that opens the same spool_dir.
        """
        if self._closed:
            return self.unacknowledged()
        self._closed = True
        left = self.flush(timeout_s)
        if self._courier is not None:
            self._wake.set()
            self._courier.join(timeout=max(1.0, self.options.connect_timeout_s))
        producer = self._producer
        if producer is not None:
            self._close_producer(producer)
        if self._spool is not None:
            self._spool.close()
        if left:
            where = (
                f"; they stay in the spool {self._spool.directory}"
                if self._spool is not None
                else "; their Deliveries carry the error"
            )
            log.warning("closed with %d events not acknowledged by Kafka%s", left, where)
        return left

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        config = self.options.producer_config(self.bootstrap)
        try:
            producer = self._factory(**config)
        except Exception as error:
            msg = (
                f"cannot reach Kafka at {self.bootstrap} within {self.options.connect_timeout_s} s: {error}. "
                "Is the broker running and the address right?"
            )
            if self._spool is None:
                msg += " (A client with spool_dir= keeps events on local disk while Kafka is away.)"
            raise KafkaUnavailableError(msg) from error
        try:
            # Fetch the topic's metadata now, so emit() does not block on it later.
            producer.partitions_for(self.topic)
        except Exception as error:
            self._close_producer(producer, 0.0)
            msg = (
                f"Kafka at {self.bootstrap} has no topic '{self.topic}' (or did not answer within "
                f"{self.options.max_block_s} s): {error}. Create it first "
                f"(streams.common.topics.ensure_topics, or kafka-topics.sh --create --topic {self.topic})."
            )
            raise KafkaUnavailableError(msg) from error
        return producer

    def _send(self, raw: bytes, key: bytes, delivery: Delivery) -> None:
        producer = self._producer
        try:
            future = producer.send(self.topic, value=raw, key=key, partition=self._keys.of(producer, key))
        except Exception as error:  # metadata unavailable within max_block_s, producer closed, ...
            self._outcome(delivery, error)
            return
        future.add_both(delivery._kafka_outcome)

    def _outcome(self, delivery: Delivery, outcome: Any) -> None:
        """One attempt's outcome: RecordMetadata or an exception (on the producer's sender thread)."""
        ref, spool = delivery._ref, self._spool
        if isinstance(outcome, BaseException):
            if ref is not None and spool is not None:
                # The event stays spooled; the courier resends it after retry_interval_s.
                with self._lock:
                    spool.release(ref)
                    self.stats.attempts_failed += 1
                    self._parked[ref] = delivery
                return
            with self._lock:
                self.stats.failed += 1
            delivery._settle(None, self._delivery_error(delivery.event_id, outcome))
        else:
            if ref is not None and spool is not None:
                spool.acknowledge(ref)
                with self._lock:
                    self._parked.pop(ref, None)
            with self._lock:
                self.stats.acknowledged += 1
            delivery._settle(outcome, None)
        if self.on_delivery is not None:
            self._report(delivery)

    def _batch_settled(self, batch: BatchDelivery) -> None:
        if self._spool is not None:
            return  # its events were counted one by one
        with self._lock:
            self.stats.acknowledged += batch.total - len(batch.failures)
            self.stats.failed += len(batch.failures)

    def _delivery_error(self, event_id: str, error: BaseException) -> DeliveryError:
        msg = (
            f"event {event_id!r} was not acknowledged by Kafka at {self.bootstrap} "
            f"(topic '{self.topic}'): {type(error).__name__}: {error}. Emit it again (same event_id) "
            "or use spool_dir= so the client keeps and resends it."
        )
        return DeliveryError(msg)

    def _report(self, delivery: Delivery) -> None:
        if self.on_delivery is not None:
            try:
                self.on_delivery(delivery)
            except Exception:
                log.exception("on_delivery callback raised for event %r", delivery.event_id)

    def _run_courier(self) -> None:
        """Connects (retrying while Kafka is away) and (re)sends spooled events that need it."""
        spool = self._spool
        assert spool is not None
        while True:
            stopping = self._closed
            if self._producer is None:
                if stopping:
                    return  # what is parked stays spooled for the next client on this spool_dir
                try:
                    self._producer = self._connect()
                except KafkaUnavailableError as error:
                    log.warning("%s; %d events wait in the spool", error, spool.unacknowledged())
                    self._wake.wait(self.options.retry_interval_s)
                    self._wake.clear()
                    continue
            with self._lock:
                batch = spool.take_pending(limit=2_000)
                parked = [self._parked.pop(ref, None) for ref, _ in batch]
                self.stats.resent += len(batch)
            for (ref, raw), delivery in zip(batch, parked, strict=True):
                decoded = check_event(raw)
                if isinstance(decoded, Rejection):
                    log.error("dropping unreadable spool record %s: %s", ref, decoded.describe())
                    spool.discard(ref)
                    continue
                self._send(
                    raw, decoded.customer_id.encode(), delivery or Delivery(decoded.event_id, self, ref)
                )
            if stopping:
                return
            if len(batch) < 2_000:
                self._wake.wait(self.options.retry_interval_s)
                self._wake.clear()

    def _flush_producer(self, producer: Any, timeout_s: float) -> None:
        try:
            producer.flush(timeout=max(0.0, timeout_s))
        except Exception as error:  # KafkaTimeoutError: outcomes are counted by the callbacks anyway
            log.debug("producer flush ended early: %s", error)

    def _close_producer(self, producer: Any, timeout_s: float = 1.0) -> None:
        try:
            producer.close(timeout=timeout_s)
        except Exception:
            # kafka-python's close() raises from its flush when records are still in flight and
            # then never stops its sender thread; stop it so close() stays bounded in an outage.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
