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


# `slow` is what a developer's quick loop (`make fast`, `pytest -m "not slow"`) leaves out;
# `make test` and CI run everything. Slow are: whole folders that start the Mono lab or run
# Ansible, and the modules that rotate whole farms over real sshd/WinRM nodes or inject
# faults into them. What stays fast: parsers, data-driven tests, the local contract and
# single-node real-server tests.
SLOW_FOLDERS = ("tests/lab/", "tests/playbooks/")
SLOW_MODULES = frozenset(
    {
        "tests/cli/test_ansible_flags.py",
        "tests/cli/test_hostile_inventory.py",
        "tests/cli/test_journal_trust.py",
        "tests/cli/test_one_history.py",
        "tests/cli/test_rotate.py",
        "tests/cli/test_truthful_output.py",
        "tests/nodes/test_ssh_contract.py",
        "tests/nodes/test_ssh_ops.py",
        "tests/nodes/test_winrm.py",
        "tests/nodes/test_winrm_contract.py",
        "tests/orchestration/test_agent_sessions.py",
        "tests/orchestration/test_fences.py",
        "tests/orchestration/test_node_limits.py",
        "tests/orchestration/test_recover_cases.py",
        "tests/orchestration/test_release_send_fails.py",
        "tests/orchestration/test_rotate_farm.py",
        "tests/orchestration/test_state_full.py",
    }
)


def _is_slow(item: pytest.Item) -> bool:
    where = item.nodeid.split("::", 1)[0]
    return where.startswith(SLOW_FOLDERS) or where in SLOW_MODULES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow suites (above); skip a ``needs_root`` test when not root, for that reason
    (the one skip the suite allows)."""
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NEEDS_ROOT)
    for item in items:
        if item.get_closest_marker("needs_root") is not None:
            item.add_marker(skip)
