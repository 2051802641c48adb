"""Farm-wide checks over the built hosts: one farm, one policy, each node managed once."""

from __future__ import annotations

import ipaddress

from farmsync.inventory.graph import GroupGraph
from farmsync.inventory.model import Host, Transport


def check_one_farm(graph: GroupGraph, hosts: list[Host]) -> None:
    first = hosts[0]
    for host in hosts[1:]:
        for what, mine, theirs, var in (
            ("farm", host.farm, first.farm, "farmsync_farm"),
            ("policy", host.policy, first.policy, "farmsync_policy"),
        ):
            if mine != theirs:
                decl = graph.hosts[host.name]
                merged = graph.merged(decl)
                line = merged[var].line if var in merged else decl.line
                raise graph.error(
                    f"all hosts must share one {what} ({var}): {host.name!r} differs from "
                    f"{first.name!r}" + (f" ({mine!r} vs {theirs!r})" if what == "farm" else ""),
                    line,
                )


def _node_address(address: str) -> str:
    """One spelling per address, so "::1" and "0:0::1", or "Web01." and "web01", compare equal."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def check_unique_nodes(graph: GroupGraph, hosts: list[Host]) -> None:
    seen: dict[tuple[str, int], Host] = {}
    local_paths: dict[str, Host] = {}
    for host in hosts:
        if host.transport is Transport.LOCAL:
            for path in host.root_configs:
                other = local_paths.setdefault(path, host)
                if other is not host:
                    raise graph.error(
                        f"hosts {other.name!r} and {host.name!r} are both local and both manage "
                        f"{path}; the same file would be managed twice",
                        host.source_line,
                    )
            continue
        key = (_node_address(host.address), host.port)
        other = seen.setdefault(key, host)
        if other is not host:
            raise graph.error(
                f"hosts {other.name!r} (line {other.source_line}) and {host.name!r} both reach "
                f"{host.address}:{host.port}; the same node would be managed twice",
                host.source_line,
            )
