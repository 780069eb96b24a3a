"""Shells around the pure engine: CLI, embedded runner, ClickHouse store, simulator, Faust app."""
