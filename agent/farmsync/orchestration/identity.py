"""One node, one inventory entry; one file, one managed path.

Addresses prove nothing: ``127.0.0.1`` and ``localhost``, or a DNS alias, reach the same sshd,
and a config directory may be a symlink to another managed one. Two commits on one file
would make the second backup from the first one's new content, and the original would be
gone. So after the read, and before anything is staged or the vault is touched, the run
compares what the nodes proved: each node's identity (the SSH host key, or the WinRM
certificate plus the machine id; see ``NodeOperations.identity``) and each file's identity
(``FileState.file_id``), compared among the hosts of one node identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from farmsync.errors import InputError
from farmsync.inventory.model import Host
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.survey import NodeReport


def identity_problems(
    hosts: Sequence[Host],
    nodes: Mapping[str, NodeOperations],
    reports: Mapping[str, NodeReport],
    source: str | None = None,
) -> list[InputError]:
    """Hosts that are one node, and managed paths that are one file; each named with both."""
    problems: list[InputError] = []
    first_host: dict[str, Host] = {}
    scope: dict[str, str] = {}  # host -> the node identity its file ids are compared within
    for host in hosts:
        node = nodes.get(host.name)
        identity = node.identity() if node is not None else None
        if identity is None:
            continue
        earlier = first_host.setdefault(identity.proof, host) if identity.unique else host
        if earlier is not host:
            problems.append(
                InputError(
                    f"hosts {earlier.name!r} (line {earlier.source_line}) and {host.name!r} "
                    f"reach one node ({identity.proof}); list each node once",
                    source=source,
                    line=host.source_line,
                )
            )
            continue  # its files are the other entry's files: one message says it all
        scope[host.name] = identity.proof
    seen: dict[tuple[str, str], tuple[Host, str]] = {}
    for host in hosts:
        report = reports.get(host.name)
        if host.name not in scope or report is None:
            continue
        for file in report.files:
            if file.file_id is None:
                continue
            earlier_host, earlier_path = seen.setdefault(
                (scope[host.name], file.file_id), (host, file.path)
            )
            if (earlier_host, earlier_path) != (host, file.path):
                problems.append(
                    InputError(
                        f"{earlier_host.name}:{earlier_path} and {host.name}:{file.path} are "
                        "one file (a link or a symlinked directory); manage it once",
                        source=source,
                        line=host.source_line,
                    )
                )
    return problems
