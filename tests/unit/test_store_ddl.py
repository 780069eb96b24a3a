"""One schema for chDB and servers: the DDL for a single node and for a sharded cluster."""

from __future__ import annotations

from projections import schema
from streams.store.clickhouse import table_ddl


def test_single_node_tables_dedupe_by_version_and_honour_dedup_tokens() -> None:
    """Versioned tables replace rows by version with deletes; inserts can be deduplicated by token."""
    (ddl,) = table_ddl(schema.DEVIATIONS)
    assert "ENGINE = ReplacingMergeTree(version, is_deleted)" in ddl
    assert "ORDER BY (scenario, customer_id, instance_id, idx)" in ddl
    assert "non_replicated_deduplication_window" in ddl
    assert "`occurred_at` DateTime64(3, 'UTC')" in ddl


def test_cluster_tables_are_replicated_and_sharded_by_customer() -> None:
    """On a cluster every table is a Replicated local table behind a Distributed table."""
    local, distributed = table_ddl(schema.JOURNEY_INSTANCES, cluster="prod")
    assert local.startswith("CREATE TABLE IF NOT EXISTS journey_instances_local ON CLUSTER prod")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/journey_instances'" in local
    assert "version, is_deleted)" in local
    assert (
        "Distributed(prod, currentDatabase(), journey_instances_local, cityHash64(customer_id))"
        in distributed
    )


def test_every_table_has_a_scenario_column() -> None:
    """Replays write beside live data: every projection table carries the scenario."""
    assert all(table.columns[0] == ("scenario", "LowCardinality(String)") for table in schema.TABLES)
