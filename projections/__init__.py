"""The pure journey engine: definitions, exact conformance, friction and projection rows (no I/O)."""
