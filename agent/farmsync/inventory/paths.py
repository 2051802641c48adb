"""Files on the controller that an inventory names: where a relative one is, whether it exists.

A relative path in an inventory (``ansible_ssh_private_key_file: keys/web.pem``) is relative
to the inventory file, not to wherever farmsync happens to be started: the inventory is
checked in beside its keys and CA files, and cron starts in ``/``. ``~`` is the user's home.
Paths on the nodes (``farmsync_root_configs``) are not touched here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from farmsync.errors import InputError
from farmsync.inventory.model import Host, Inventory

# (variable, read from a host, write into a host)
_FILES: tuple[tuple[str, Callable[[Host], str | None], Callable[[Host, str], Host]], ...] = (
    (
        "ansible_ssh_private_key_file",
        lambda h: h.ssh.private_key_file,
        lambda h, p: replace(h, ssh=replace(h.ssh, private_key_file=p)),
    ),
    (
        "farmsync_known_hosts",
        lambda h: h.ssh.known_hosts_file,
        lambda h, p: replace(h, ssh=replace(h.ssh, known_hosts_file=p)),
    ),
    (
        "ansible_winrm_ca_trust_path",
        lambda h: h.winrm.ca_trust_path,
        lambda h, p: replace(h, winrm=replace(h.winrm, ca_trust_path=p)),
    ),
    (
        "ansible_winrm_cert_pem",
        lambda h: h.winrm.cert_pem,
        lambda h, p: replace(h, winrm=replace(h.winrm, cert_pem=p)),
    ),
    (
        "ansible_winrm_cert_key_pem",
        lambda h: h.winrm.cert_key_pem,
        lambda h, p: replace(h, winrm=replace(h.winrm, cert_key_pem=p)),
    ),
)


def anchor_relative_paths(inventory: Inventory) -> Inventory:
    """``inventory`` with every relative controller-side path made relative to its file."""
    base = Path(inventory.path).absolute().parent
    hosts: dict[str, Host] = {}
    for name, host in inventory.hosts.items():
        for _variable, read, write in _FILES:
            value = read(host)
            if value:
                expanded = os.path.expanduser(value)
                if not os.path.isabs(expanded):
                    host = write(host, str(base / expanded))
                elif expanded != value:
                    host = write(host, expanded)
        hosts[name] = host
    return replace(inventory, hosts=hosts)


def missing_controller_files(inventory: Inventory) -> list[InputError]:
    """One error per file an inventory names on this controller that is not there."""
    problems: list[InputError] = []
    seen: set[tuple[str, str]] = set()
    for host in inventory.hosts.values():
        for variable, read, _write in _FILES:
            value = read(host)
            if not value or (variable, value) in seen or os.path.exists(value):
                continue
            seen.add((variable, value))
            problems.append(
                InputError(
                    f"host {host.name!r}: {variable} {value} does not exist on this controller"
                    " (relative paths are relative to the inventory file)",
                    source=inventory.path,
                    line=host.source_line,
                )
            )
    return problems


def require_controller_files(inventory: Inventory) -> None:
    """Raise the first missing file as bad input, before anything is contacted."""
    problems = missing_controller_files(inventory)
    if problems:
        raise problems[0]
