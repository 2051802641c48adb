"""An agent that dies right after arming, over the real WS-Management endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import CommitItem, StageItem, sha256_hex, staging_path
from farmsync.nodes.winrm import WinrmNode
from tests.nodes.test_winrm import RUN, web_config
from tests.servers.wsman_endpoint import WsmanEndpoint


@pytest.fixture
def node_dir(wsman_server: WsmanEndpoint) -> Path:
    assert wsman_server.working_directory is not None
    return Path(wsman_server.working_directory)


def test_an_agent_killed_just_after_arming_is_a_node_error(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    # The agent prints its armed line and dies before the controller's Receive fetches it:
    # the one Receive answer carries the armed line and the command state Done.
    site = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    site.write_bytes(old)
    with WinrmNode(wsman_host(wsman_server)) as node:
        node.read([str(site)])
        wsman_server.delay(3.0, action="Receive")  # the Receive after the stage_commit Send

        def kill_once_armed() -> None:
            staged = Path(staging_path(str(site), RUN))
            deadline = time.monotonic() + 20
            while not staged.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)  # the twin checks, then prints armed and waits for the word
            wsman_server.kill_agents()

        killer = threading.Thread(target=kill_once_armed)
        killer.start()
        try:
            with pytest.raises(NodeError) as caught:
                node.stage_and_arm(
                    [StageItem(str(site), new, sha256_hex(old))],
                    [CommitItem(str(site), sha256_hex(old), sha256_hex(new))],
                    RUN,
                    1,
                )
        finally:
            killer.join()
        assert caught.value.kind is NodeErrorKind.CONNECTION_LOST
    assert site.read_bytes() == old
