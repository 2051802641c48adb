"""``farmsync audit`` on the mixed farm of real nodes: POSIX sshd nodes, a Windows-shell sshd
node and a WinRM endpoint, the Windows nodes served by the Python twin of the agent. The WinRM
node answers for an IIS server (applicationHost corpus, registry and RSA answers from the
twin's facts file); the Windows-shell node has no facts file, as a node the audit's account
may not read the registry of."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.nodes.audit_tree import D, V, windows_tree
from tests.orchestration.farmkit import TestFarm


def test_audit_of_a_mixed_farm(
    make_farm: Callable[..., TestFarm], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm = make_farm(ssh=2, ssh_windows=1, winrm=1)
    assert farm.cli("rotate").returncode == 0
    tree = windows_tree(tmp_path / "iis-server")
    for name, value in tree.env().items():
        monkeypatch.setenv(name, value)  # the WS-Man endpoint's agent processes inherit them
    done = farm.cli("audit", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(n["host"], n["platform"], n["round_trips"]) for n in report["nodes"]] == [
        ("web1", "posix", 1),
        ("web2", "posix", 1),
        ("win3", "windows", 1),
        ("iis1", "windows", 1),
    ]
    found = {(f["id"], f["host"]) for f in report["findings"]}
    assert ("viewstate-mac-disabled", "iis1") in found  # the registry answer
    assert ("windows-facts-unavailable", "win3") in found
    assert ("key-drift", "web1") not in found  # the managed root configs all agree
    iis = next(n for n in report["nodes"] if n["host"] == "iis1")
    apps = {s["name"]: s for s in iis["scopes"] if s["kind"] == "application"}
    assert len(apps) == 6 and apps["Intranet"]["status"] == "unreadable"
    assert apps["Default Web Site/shop"]["sources"]["validationKey"]["path"] == (
        r"%SystemDrive%\D\sites\shop\web.config"
    )
    assert ("application-override", "iis1") in found
    assert iis["rsa"]["iisWasKey"]["status"] == "missing"
    unreadable = [f for f in report["findings"] if f["id"] == "unreadable-config"]
    assert [f["path"] for f in unreadable] == [
        "\\\\fileserver.example\\intranet$\\wwwroot\\web.config"
    ]
    assert V not in done.stdout + done.stderr and D not in done.stdout + done.stderr
