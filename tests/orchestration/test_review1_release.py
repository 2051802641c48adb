"""Review findings (review1): a WinRM release whose Send fails, on real agents behind the
real WS-Management endpoint."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import TestFarm, hooked_factory
from tests.servers.wsman_endpoint import WsmanEndpoint


@pytest.mark.parametrize("fault", ["drop", "http"])
def test_a_release_whose_send_fails_leaves_the_farm_all_old(
    make_farm: Callable[..., TestFarm], fault: str
) -> None:
    farm = make_farm(ssh=1, ssh_windows=0, winrm=2)
    server: WsmanEndpoint = farm.handles["iis1"]

    def break_next_send() -> None:  # the release's Send, and only it
        if fault == "drop":
            server.drop(action="Send")
        else:
            server.http_error(500, action="Send")

    hooks = {"iis1": {"release": break_next_send}}
    result = farm.open(factory=hooked_factory(hooks)).rotate()

    assert result.outcome is Outcome.ROLLED_BACK, result.messages
    assert farm.files_unchanged()
    assert not farm.leftovers()
    for name in farm.hosts:
        for backup in farm.backups(name):
            assert backup.read_bytes() == farm.originals[name]
    assert server.running_processes() == 0 and server.open_shells == 0
