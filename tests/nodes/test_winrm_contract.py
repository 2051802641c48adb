"""WinrmNode against the shared contract cases: real HTTPS to the WS-Man test endpoint,
the Python agent in place of PowerShell, real files under the node's directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.inventory.model import Host
from farmsync.nodes.winrm import WinrmNode
from tests.nodes.contract_cases import CONTRACT_CASES, ContractCase, case_id
from tests.servers.wsman_endpoint import WsmanEndpoint


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_winrm_node_contract(
    case: ContractCase, wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    root = Path(wsman_server.working_directory or "")
    with WinrmNode(wsman_host(wsman_server)) as node:
        case(node, root)
        round_trips = node.round_trips
    assert wsman_server.requests["Create"] == 1  # every phase reused the one shell
    assert wsman_server.requests["Command"] == round_trips  # one command per phase
    assert wsman_server.running_processes() == 0
