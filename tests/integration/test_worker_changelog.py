"""The worker's state writes reach a changelog topic its producer has not seen yet (a first start)."""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from streams.common.topics import partition_for
from streams.worker.partitioning import send_changelog

pytestmark = pytest.mark.kafka


def test_a_state_write_to_a_changelog_topic_created_after_the_producer_started_lands(
    kafka_bootstrap: str,
) -> None:
    """On a first start Faust creates a table's changelog topic after its producer read the cluster
    metadata. Faust's own `send_changelog(None, ...)` then crashes the agent (the alerts agent's
    "'NoneType' object is not iterable"); the worker's write lands, on the key's murmur2 partition."""

    async def scenario() -> tuple[str, int]:
        app = faust.App(
            f"changelog{uuid.uuid4().hex[:8]}",
            broker=f"kafka://{kafka_bootstrap}",
            autodiscover=False,
            topic_partitions=4,
        )
        table = app.Table("state", default=None, partitions=4, key_type=bytes, value_type=bytes)
        await app.producer.start()
        try:
            admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
            try:
                admin.create_topics([NewTopic(table.changelog_topic.get_topic_name(), 4, 1)])
            finally:
                admin.close()
            try:
                table.send_changelog(None, b"c-42", b"state")
                faust_way = "sent"
            except TypeError as error:  # the producer does not know the topic yet
                faust_way = f"TypeError: {error}"
            written = await send_changelog(table, b"c-42", b"state")
            return faust_way, int(written.partition)
        finally:
            await app.producer.stop()

    faust_way, partition = asyncio.run(scenario())
    assert faust_way == "TypeError: 'NoneType' object is not iterable"
    assert partition == partition_for(b"c-42", 4)
