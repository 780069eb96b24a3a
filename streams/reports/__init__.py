"""Offline reports read from the projections: scenario and comparison pages, team digests."""
