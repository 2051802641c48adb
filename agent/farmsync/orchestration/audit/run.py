"""Running an audit: connect, one read-only ``audit`` round trip per node, resolve, judge.

No lock is taken and no vault opened: the audit reads the nodes and the journal only, so it
can run beside a rotation and needs no secret."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from farmsync.errors import describe_error
from farmsync.inventory.model import Host
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.audit.expected import expected_key
from farmsync.orchestration.audit.model import AuditModel, NodeModel
from farmsync.orchestration.audit.options import AuditOptions
from farmsync.orchestration.audit.report import AuditReport
from farmsync.orchestration.audit.resolve import audit_request, is_windows, resolve_node
from farmsync.orchestration.audit.rules import evaluate
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.pool import TaskResult, run_each
from farmsync.orchestration.session import FarmSession, NodeFactory
from farmsync.orchestration.survey import as_farmsync_error


def read_nodes(
    hosts: Sequence[Host], forks: int, reporter: Reporter, factory: NodeFactory = node_for
) -> list[NodeModel]:
    """Every node's model, in inventory order; a node that cannot be read carries its error."""
    models: dict[str, NodeModel] = {}
    with FarmSession(hosts, forks=forks, reporter=reporter, factory=factory) as session:
        for name, error in session.failures.items():
            models[name] = NodeModel(name, is_windows(session.hosts[name]), error=error)
        reporter.event(Event(Phase.READ, Status.START, total=len(session.nodes)))

        def work(name: str, node: NodeOperations) -> NodeModel:
            host = session.hosts[name]
            read = node.audit(audit_request(host))
            return resolve_node(host, read, node.round_trips)

        def done(name: str, outcome: TaskResult[NodeModel]) -> None:
            status = Status.OK if outcome.ok else Status.FAILED
            reporter.event(Event(Phase.READ, status, name, describe_error(outcome.error)))

        for name, outcome in run_each(session.nodes.items(), work, forks, done).items():
            if outcome.value is not None:
                models[name] = outcome.value
            else:
                error = as_farmsync_error(name, outcome.error, Phase.READ)
                models[name] = NodeModel(name, is_windows(session.hosts[name]), error=error)
    return [models[h.name] for h in hosts]


def run_audit(
    farm: str,
    hosts: Sequence[Host],
    journal_path: Path,
    options: AuditOptions,
    reporter: Reporter,
    *,
    disclosed: DisclosedKeys | None = None,
    factory: NodeFactory = node_for,
    now: datetime | None = None,
) -> AuditReport:
    started = time.monotonic()
    capped = [replace(h, timeout=min(h.timeout, options.timeout)) for h in hosts]
    nodes = read_nodes(capped, options.forks, reporter, factory)
    journal = Journal(journal_path)
    runs = journal.runs() if journal_path.is_file() else []
    # One policy per farm: the inventory loader refuses hosts that differ.
    max_age = hosts[0].policy.max_key_age_days if hosts else None
    model = AuditModel(
        farm,
        nodes,
        expected_key(runs, [n for n in nodes if n.reachable]),
        max_age,
        now or datetime.now(UTC),
        disclosed,
    )
    report = AuditReport(model, evaluate(model), options.fail_on)
    report.duration_ms = (time.monotonic() - started) * 1000
    if model.expected.source == "majority":
        report.notes.append("no finished run in the journal: the expected key is the farm majority")
    elif model.expected.source == "none":
        report.notes.append("no expected key: the journal has no run and no key is a majority")
    if journal.damaged_lines:
        report.notes.append(f"journal lines skipped as unreadable: {journal.damaged_lines}")
    return report
