"""Differences: between two journey designs and between two scenarios' projections."""
