"""Pick the transport for a host: the one place that knows which class serves which transport."""

from __future__ import annotations

from farmsync.inventory.model import Host, Transport
from farmsync.nodes.contract import NodeOperations


def node_for(host: Host) -> NodeOperations:
    """An unconnected NodeOperations for ``host`` (call ``connect()`` or use it as a context)."""
    # Imported lazily so that a run touching only SSH nodes never loads pywinrm, and vice versa.
    if host.transport is Transport.SSH:
        from farmsync.nodes.ssh import SshNode

        return SshNode(host)
    if host.transport is Transport.WINRM:
        from farmsync.nodes.winrm import WinrmNode

        return WinrmNode(host)
    from farmsync.nodes.local import LocalNode

    return LocalNode(host)
