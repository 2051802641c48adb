"""WinrmNode against the shared contract cases: real HTTPS to the WS-Man test endpoint,
the Python agent in place of PowerShell, real files under the node's directory, one agent
process per run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.inventory.model import Host
from farmsync.nodes.winrm import WinrmNode
from tests.nodes.contract_cases import CONTRACT_CASES, ContractCase, case_id
from tests.servers.wsman_endpoint import WsmanEndpoint

EXPECTED_AGENTS = {"rollback_fences_a_released_commit_that_has_not_landed": 2}


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_winrm_node_contract(
    case: ContractCase, wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    root = Path(wsman_server.working_directory or "")
    with WinrmNode(wsman_host(wsman_server)) as node:
        case(node, root)
        agents = node.session.agents_started
    assert wsman_server.requests["Create"] == 1  # every phase reused the one shell
    # One agent for the run; a second only where a commit held the first (a rollback's
    # fence sent while a commit was armed). Delete Shell ended them.
    assert wsman_server.requests["Command"] == agents == EXPECTED_AGENTS.get(case.__name__, 1)
    assert wsman_server.running_processes() == 0
