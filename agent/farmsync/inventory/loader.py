"""Load an Ansible-style YAML inventory into typed :class:`Inventory` settings.

Four steps, one module each: the YAML is read with its line numbers (``lineyaml``), its groups,
hosts and variables form the Ansible group graph (``graph``), each host's merged variables are
validated into a :class:`Host` (``hostbuild``), and the farm as a whole is checked
(``farmcheck``).

Stricter than Ansible where a silent surprise would manage the wrong machines or leak a
secret: duplicate keys, two host names for one address, unknown ``farmsync_*`` names and
wrongly typed values are errors. Every error is one :class:`InputError` naming file and line,
raised before anything is contacted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from farmsync.errors import InputError
from farmsync.inventory.farmcheck import check_one_farm, check_unique_nodes
from farmsync.inventory.graph import GroupGraph
from farmsync.inventory.hostbuild import HostBuilder, windows_root_configs
from farmsync.inventory.lineyaml import parse_yaml
from farmsync.inventory.model import Inventory
from farmsync.inventory.paths import anchor_relative_paths

__all__ = ["load_inventory", "windows_root_configs"]


def load_inventory(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Inventory:
    """Read, merge and validate an inventory file. Raise InputError on any problem."""
    source = os.fspath(path)
    text = _read_text(source)
    graph = GroupGraph(source)
    graph.walk(parse_yaml(text, source))
    graph.finish_groups()
    if not graph.hosts:
        raise graph.error("the inventory has no hosts: the farm is empty", 1)

    builder = HostBuilder(graph, os.environ if environ is None else environ)
    default_farm = Path(source).stem
    hosts = [builder.build_host(decl, default_farm) for decl in graph.hosts.values()]
    check_one_farm(graph, hosts)
    check_unique_nodes(graph, hosts)

    order = {host.name: i for i, host in enumerate(hosts)}
    groups = {
        name: tuple(sorted(graph.group_members(name), key=order.__getitem__))
        for name in graph.groups
    }
    groups["all"] = tuple(order)
    inventory = Inventory(
        path=source,
        farm=hosts[0].farm,
        hosts={host.name: host for host in hosts},
        groups=groups,
        warnings=tuple(graph.warnings),
    )
    return anchor_relative_paths(inventory)  # relative key/CA paths: beside the inventory


def _read_text(source: str) -> str:
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read inventory: {exc.strerror or exc}", source=source) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("inventory is not UTF-8 text", source=source, line=line) from None
