"""``farmsync doctor -i INVENTORY``: is every node ready for a rotation? Changes nothing.

Registered in ``cli/main.py`` by :func:`register`, which hands over the shared ``-i`` option.
The checks and the table (``cli/doctor_view.py``) load when the command runs, not for
``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def register(group: click.Group, inventory_option: Callable[..., Any]) -> None:
    """Add ``doctor`` to the command group (``cli/main.py``)."""

    @group.command("doctor")
    @inventory_option
    @click.option("-l", "--limit", default=None, help="Ansible host pattern selecting hosts.")
    @click.option(
        "-f",
        "--forks",
        default=50,
        show_default=True,
        type=click.IntRange(1, 10000),
        help="How many nodes to check at once.",
    )
    @click.option(
        "--timeout",
        default=None,
        type=click.FloatRange(1, 3600),
        help="Seconds per node (connect and check), instead of farmsync_timeout.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
    def doctor(
        inventory_path: Path, limit: str | None, forks: int, timeout: float | None, as_json: bool
    ) -> None:
        """Check, read-only, that every node is ready for a rotation."""
        from farmsync.cli.doctor_view import show
        from farmsync.cli.main import stdout_console
        from farmsync.inventory.loader import load_inventory
        from farmsync.inventory.patterns import select_hosts
        from farmsync.orchestration.doctor import run_doctor

        inventory = load_inventory(inventory_path)
        hosts = select_hosts(inventory, limit)
        reports = run_doctor(hosts, forks, timeout)
        sys.exit(show(reports, as_json, stdout_console()))
