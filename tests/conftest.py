"""Shared test set-up. Real servers are started by the fixture plugins under tests/servers/."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.servers.sshd_fixtures",
    "tests.servers.wsman_fixtures",
    "tests.servers.lab_fixtures",
]

NEEDS_ROOT = "needs root (a tmpfs mount, chattr +i or a local account); CI runs the suite as root"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The one skip the suite allows: a ``needs_root`` test when not root, for that reason."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NEEDS_ROOT)
    for item in items:
        if item.get_closest_marker("needs_root") is not None:
            item.add_marker(skip)
