"""Fixtures: wsman test servers."""
