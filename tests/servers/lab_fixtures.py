"""Fixtures: lab test servers."""
