"""Replaying recorded history against a redesigned journey, and comparing two scenarios."""
