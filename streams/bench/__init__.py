"""Benchmarks that print figures: engine, native core, replay, ingest, stream, alerts and SQL."""
