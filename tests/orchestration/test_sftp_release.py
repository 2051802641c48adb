"""The POSIX release over SFTP at the farm level (issue 9): sessions counted in each sshd's
own log, the files' mtime skew beside the commit window, and a controller killed between
the release and its acknowledgement, then `recover`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from farmsync.lab.sshd import SshdNode
from tests.orchestration.farmkit import TestFarm
from tests.orchestration.test_crash_recovery import kill, run_until_stalled
from tests.servers.sshd_fixtures import sshd_sessions


def test_a_rotation_is_one_session_and_no_exec_per_posix_node(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    before = {name: sshd_sessions(node) for name, node in farm.handles.items()}

    done = farm.cli("rotate", "--json")

    assert done.returncode == 0, done.stderr
    for name, node in farm.handles.items():
        connections, sftp, execs = (
            a - b for a, b in zip(sshd_sessions(node), before[name], strict=True)
        )
        assert (connections, sftp, execs) == (1, 1, 0), name
    result = json.loads(done.stdout)
    assert not any("armed shell" in m for m in result["messages"])
    assert not [p for c in farm.configs.values() for p in c.parent.glob("*.probe*")]
    # The skew the files show, at the whole seconds SFTP v3 gives: no finer claim.
    seconds = [int(p.stat().st_mtime) for p in farm.configs.values()]
    assert result["mtime_resolution_ms"] == 1000.0
    assert result["mtime_skew_ms"] == (max(seconds) - min(seconds)) * 1000
    assert result["commit_window_ms"] is not None


def test_a_controller_killed_between_release_and_acknowledgement_then_recover(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    # forks=1: web1 released, then web2 released, then the controller stalls before it
    # reads a single answer. The nodes carry out the pipelined requests on their own.
    proc = run_until_stalled(farm, "web2", "after")
    for _ in range(200):
        if farm.files_unchanged() is False and len(set(farm.fingerprints().values())) == 1:
            break
        time.sleep(0.05)
    kill(proc)
    target = next(iter(set(farm.fingerprints().values())))
    assert all(p.read_bytes() != farm.originals[h] for h, p in farm.configs.items())

    recovered = farm.cli("recover", "--json")

    assert recovered.returncode == 0, recovered.stderr + recovered.stdout
    report = json.loads(recovered.stdout)
    assert any("recovered unfinished run" in m and "changed" in m for m in report["messages"])
    assert set(farm.fingerprints().values()) == {target}
    assert not farm.leftovers()
    assert not [p for c in farm.configs.values() for p in c.parent.glob("*.probe*")]
    for name, node in farm.handles.items():
        assert sshd_sessions(node)[2] == 0, f"{name}: an exec on the SFTP path"
    history = json.loads(farm.cli("history", "--json").stdout)["keys"]
    assert {k["fingerprint"]: k["status"] for k in history}[target] == "active"


def test_a_node_that_cannot_commit_over_sftp_falls_back_and_says_so_once(
    make_farm: Callable[..., TestFarm], request: pytest.FixtureRequest
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    old: SshdNode = farm.handles["web1"]
    port = old.port
    old.stop()
    # Refused by the request names `sftp-server -Q requests` lists.
    node = SshdNode(
        old.directory, keys=old.keys, sftp_subsystem="internal-sftp -P hardlink,posix-rename"
    )
    request.addfinalizer(node.stop)
    node.start(port=port)
    farm.handles["web1"] = node

    done = farm.cli("rotate")  # not a terminal: one progress line per event on stderr

    assert done.returncode == 0, done.stderr
    # Each line after its timestamp.
    warnings = [line.split(" ", 1)[1] for line in done.stderr.splitlines() if ": warning " in line]
    assert warnings == [
        "[arm] web1: warning SFTP commit unavailable (hardlink@openssh.com is refused by the "
        "node's SFTP server); using the armed shell"
    ]
    assert len(set(farm.fingerprints().values())) == 1
    assert not [p for c in farm.configs.values() for p in c.parent.glob("*.probe*")]
    assert sshd_sessions(node)[2] == 1  # the armed shell, on web1 only
    assert sshd_sessions(farm.handles["web2"])[2] == 0
