"""Friction spike alerts per touchpoint: model, config, detector, hold-back, codec, rows, Slack message."""
