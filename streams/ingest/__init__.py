"""HTTP ingest: signed requests, connection limits, replay protection, into Kafka or the embedded runner."""
