"""Gaps in exchanges' trade ids: detection and repair."""
