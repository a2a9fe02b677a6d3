"""Harness plugin (filled in by its area)."""
