"""Shared test set-up. Real servers are started by the fixture plugins under tests/servers/."""

pytest_plugins = [
    "tests.servers.sshd_fixtures",
    "tests.servers.wsman_fixtures",
    "tests.servers.lab_fixtures",
]
