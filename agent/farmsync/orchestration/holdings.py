"""Which nodes hold which key: as the journal last verified it, or as the nodes say now.

The vault's statuses (active, retired) say what the vault decided; they do not say where a
key is. ``history`` shows both: a key still on 2 of 3 nodes after a limited rotation is
``retired`` in the vault and "on 2/3 nodes" here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from farmsync.inventory.model import Host
from farmsync.orchestration.events import NullReporter
from farmsync.orchestration.journal import Journal, RunKind
from farmsync.orchestration.result import Outcome
from farmsync.orchestration.session import FarmSession, NodeFactory
from farmsync.orchestration.survey import FileCondition, survey

# Run-end details after which every host of the run holds the run's key.
_DEPLOYED = {Outcome.CHANGED.value, Outcome.RECYCLE_FAILED.value}


@dataclass(frozen=True)
class Holdings:
    """Per key fingerprint, the hosts holding it; ``as_of`` names where that comes from."""

    hosts: dict[str, list[str]]
    total: int
    as_of: str  # "run <id>" (journal) or "now" (--live)
    unknown: list[str]  # hosts whose key cannot be told (never verified, unreadable, ...)

    def describe(self, fingerprint: str) -> str:
        held = self.hosts.get(fingerprint, [])
        if not held:
            return f"on no node as of {self.as_of}"
        return f"on {len(held)}/{self.total} nodes as of {self.as_of}"


def from_journal(journal: Journal, hosts: Sequence[str]) -> Holdings:
    """What the journal's finished, verified runs last put on each host."""
    held: dict[str, str] = {}
    last_run = ""
    for run in journal.runs():
        if not run.finished or run.end_detail not in _DEPLOYED or not run.target_fp:
            if run.kind == RunKind.RESTORE and run.finished:
                for host in run.hosts:  # a restore puts back a key the journal cannot name
                    held.pop(host, None)
                    last_run = run.run_id
            continue
        for host in run.hosts:
            held[host] = run.target_fp
        last_run = run.run_id
    by_key: dict[str, list[str]] = {}
    for host in hosts:
        if host in held:
            by_key.setdefault(held[host], []).append(host)
    unknown = [h for h in hosts if h not in held]
    return Holdings(by_key, len(hosts), f"run {last_run}" if last_run else "no run", unknown)


def live(hosts: Sequence[Host], factory: NodeFactory, forks: int = 50) -> Holdings:
    """What every node holds now: a host holds a key when every managed file it has holds it."""
    by_key: dict[str, list[str]] = {}
    unknown: list[str] = []
    reporter = NullReporter()
    with FarmSession(hosts, forks=forks, reporter=reporter, factory=factory) as session:
        reports = survey(
            session.nodes,
            session.hosts,
            {h.name: list(h.root_configs) for h in hosts},
            forks=forks,
            reporter=reporter,
        )
        unknown.extend(session.failures)
    for host in hosts:
        report = reports.get(host.name)
        if report is None or report.error is not None:
            if host.name not in unknown:
                unknown.append(host.name)
            continue
        keys = {
            f.fingerprint
            for f in report.files
            if f.condition is FileCondition.OK and f.fingerprint and f.explicit
        }
        if len(keys) == 1 and all(
            f.condition in (FileCondition.OK, FileCondition.MISSING) and f.explicit
            for f in report.files
            if f.condition is FileCondition.OK
        ):
            by_key.setdefault(next(iter(keys)), []).append(host.name)
        else:
            unknown.append(host.name)
    return Holdings(by_key, len(hosts), "now", unknown)


def summary(holdings: Holdings) -> Mapping[str, object]:
    return {"as_of": holdings.as_of, "total": holdings.total, "hosts": holdings.hosts}
