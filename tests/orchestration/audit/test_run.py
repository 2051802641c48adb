"""run_audit in process on local hosts (real files): read-only on the nodes and on the
controller (no state directory is created, no lock taken), --timeout caps each node's wait,
and one round trip per node."""

from __future__ import annotations

from pathlib import Path

from farmsync.inventory.model import Host
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.audit import AuditOptions, run_audit
from farmsync.orchestration.events import NullReporter
from tests.cli.clikit import snapshot
from tests.orchestration.audit.support import config, hexkey, host, machine_key


class Recorder:
    """A node factory keeping the hosts and nodes it made (the nodes are the real ones)."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self.nodes: list[NodeOperations] = []

    def __call__(self, h: Host) -> NodeOperations:
        self.hosts.append(h)
        self.nodes.append(node_for(h))
        return self.nodes[-1]


def test_read_only_capped_and_one_round_trip(tmp_path: Path) -> None:
    key = machine_key(hexkey(64), hexkey(32))
    hosts = []
    for name in ("a", "b"):
        root = tmp_path / "nodes" / name / "web.config"
        root.parent.mkdir(parents=True)
        root.write_bytes(config(key=key))
        hosts.append(host(name, roots=(str(root),), timeout=30.0))  # ansible_connection: local
    before = snapshot(tmp_path)
    state = tmp_path / "state" / "f" / "journal.jsonl"
    recorder = Recorder()
    report = run_audit(
        "f", hosts, state, AuditOptions(forks=2, timeout=5), NullReporter(), factory=recorder
    )
    assert snapshot(tmp_path) == before  # nothing written, not even a state directory
    assert [h.timeout for h in recorder.hosts] == [5.0, 5.0]
    assert [n.round_trips for n in recorder.nodes] == [1, 1]
    assert report.exit_code == 0 and len(report.key_groups()) == 1
    assert report.model.expected.source == "majority"
