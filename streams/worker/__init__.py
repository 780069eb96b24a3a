"""The Faust worker: journey agent, sinks, alerts and offset gap-fill against a real Kafka broker."""
