"""A node lost in the middle of the audit's read: the audit still reports every other node,
names the lost one, and exits 3 (never reports it as clean)."""

from __future__ import annotations

from collections.abc import Callable

from farmsync.errors import ExitCode
from farmsync.orchestration.audit import AuditOptions, run_audit
from farmsync.orchestration.events import NullReporter
from tests.orchestration.farmkit import TestFarm, hooked_factory


def test_a_node_whose_sshd_dies_during_the_read(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    ctx = farm.context()
    factory = hooked_factory({"web2": {"audit": farm.handles["web2"].stop}})
    report = run_audit(
        ctx.farm,
        ctx.hosts,
        ctx.state.journal,
        AuditOptions(forks=3, timeout=10),
        NullReporter(),
        factory=factory,
    )
    assert report.exit_code == ExitCode.CANNOT_START
    assert [(n.host, n.reachable) for n in report.model.nodes] == [
        ("web1", True),
        ("web2", False),
        ("web3", True),
    ]
    lost = report.model.nodes[1]
    assert lost.scopes == [] and lost.error is not None
    assert report.to_dict()["nodes"][1]["error_kind"] in ("connection-lost", "unreachable")
    assert farm.files_unchanged()
