"""Kafka topic names and their idempotent creation with kafka-python's admin client."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from events.errors import TouchpathError

TOUCHPOINTS = "touchpoints"  # input; key = customer_id
BAD = "touchpoints.bad"  # quarantine: original bytes, typed reason, source offset
JOURNEY_EVENTS = "touchpath.journey-events"  # derived: per-batch records (rows, journey states)
ALERTS = "touchpath.alerts"  # friction spike alerts, key = touchpoint


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topic names of one deployment; a prefix lets several share a cluster (and tests a broker)."""

    touchpoints: str = TOUCHPOINTS
    bad: str = BAD
    journey_events: str = JOURNEY_EVENTS
    alerts: str = ALERTS

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        """Names with a prefix, e.g. 'staging.' -> 'staging.touchpoints'."""
        return cls(*(prefix + name for name in (TOUCHPOINTS, BAD, JOURNEY_EVENTS, ALERTS)))

    def all(self) -> tuple[str, ...]:
        """Every topic name."""
        return (self.touchpoints, self.bad, self.journey_events, self.alerts)


# Records the worker writes can exceed Kafka's 1 MB default (a batch's rows and states, a snapshot
# chunk). A record over the limit would stop Faust's producer, and with it the worker, so topics and
# producer allow this much.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
TOPIC_CONFIGS = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """How many partitions each topic gets (the input's partitions bound the worker count)."""

    partitions: int = 6
    replication: int = 1


def ensure_topics(
    bootstrap: str,
    plan: TopicPlan | None = None,
    client_id: str = "touchpath-admin",
    names: TopicNames | None = None,
) -> None:
    """Create the touchpath topics that do not exist yet; existing ones are left as they are."""
    plan = plan or TopicPlan()
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    except Exception as error:
        msg = (
            f"cannot reach Kafka at {bootstrap}: {error}. "
            "Is the broker running (deploy/kafka/local.sh start)?"
        )
        raise TouchpathError(msg) from error
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=plan.partitions,
                replication_factor=plan.replication,
                topic_configs=dict(TOPIC_CONFIGS),
            )
            for name in (names or TopicNames()).all()
            if name not in existing
        ]
        if wanted:
            # Another worker may create them between list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as every client) gives a keyed record."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
