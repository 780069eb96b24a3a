"""Friction spike alerting shared by every shell: detection on drained batches, routing, webhook delivery."""
