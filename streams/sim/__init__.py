"""The deterministic traffic simulator and the engine measured against its ground truth."""
