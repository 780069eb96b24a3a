"""The event contract: touchpoint event models, the bytes<->model codec and the touchpoint registry."""
