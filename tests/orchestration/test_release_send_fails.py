"""A WinRM release whose Send fails (dropped, or HTTP 500), on real agents behind the real
WS-Management endpoint: the farm ends all-old."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from farmsync.errors import NodeError, NodeErrorKind
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


def test_armed_commits_are_withdrawn_all_at_once(make_farm: Callable[..., TestFarm]) -> None:
    # One node fails to stage; the two armed WinRM nodes are withdrawn. Each withdrawal waits
    # until the other one has started: withdrawn one after the other, the first would wait
    # in vain (a node that stopped answering would cost each withdrawal its timeout in turn).
    farm = make_farm(ssh=1, ssh_windows=0, winrm=2)
    started = {name: threading.Event() for name in ("iis1", "iis2")}
    overlapped: list[str] = []

    def withdrawing(name: str, other: str) -> Callable[[], None]:
        def hook() -> None:
            started[name].set()
            if started[other].wait(30):
                overlapped.append(name)

        return hook

    def refuse() -> None:
        raise NodeError("web1", NodeErrorKind.REMOTE, "refused for the test", phase="stage")

    hooks = {
        "web1": {"stage": refuse},
        "iis1": {"abort": withdrawing("iis1", "iis2")},
        "iis2": {"abort": withdrawing("iis2", "iis1")},
    }
    result = farm.open(factory=hooked_factory(hooks)).rotate()

    assert result.outcome is Outcome.ABORTED
    assert sorted(overlapped) == ["iis1", "iis2"]
    assert farm.files_unchanged() and not farm.leftovers()
