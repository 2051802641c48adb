"""Fixtures: sshd test servers."""
