"""The projection store: its protocol, the ClickHouse adapter, the in-memory fake, and what reads it back."""
