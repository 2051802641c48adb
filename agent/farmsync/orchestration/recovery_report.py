"""What ``recover`` says: what it did per host, what ``--check`` would do, what keys remain.

Kept apart from the recovery itself (recover.py), which decides and acts; this only words it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from farmsync.errors import NodeError
from farmsync.orchestration.journal import RunKind, RunState
from farmsync.orchestration.result import FileResult, FileStatus, HostStatus, Outcome, RunResult
from farmsync.orchestration.survey import FileCondition, NodeReport

# What a settled run's host status says in recover's table: a finished run is "finished".
_DID = {HostStatus.CHANGED: HostStatus.FINISHED}


def farm_keys(reports: Mapping[str, NodeReport]) -> tuple[set[str], list[str]]:
    """The explicit keys the farm holds, and the hosts with a file on AutoGenerate (a key per
    node, and per application with IsolateApps: never one shared fingerprint)."""
    explicit: set[str] = set()
    autogenerate: list[str] = []
    for name, report in sorted(reports.items()):
        for file in report.files:
            if file.condition is not FileCondition.OK or file.fingerprint is None:
                continue
            if file.explicit:
                explicit.add(file.fingerprint)
            elif name not in autogenerate:
                autogenerate.append(name)
    return explicit, autogenerate


def keys_message(explicit: set[str], autogenerate: Sequence[str]) -> str | None:
    """None when the farm is on one explicit key; otherwise the drift, worded truthfully."""
    parts = sorted(explicit)
    if autogenerate:
        parts.append("AutoGenerate (a key of its own per node) on " + ", ".join(autogenerate))
    if len(parts) <= 1 and not autogenerate:
        return None
    return (
        "the farm holds several keys: "
        + "; ".join(parts)
        + " (run `farmsync sync` to put the vault's key everywhere)"
    )


def host_rows(result: RunResult, reports: Mapping[str, NodeReport]) -> None:
    """One row per host with the keys its files hold now."""
    for name, report in sorted(reports.items()):
        host = result.host(name)
        if report.error is not None:
            error = report.error
            host.status = HostStatus.UNREACHABLE
            host.error = str(error)
            if isinstance(error, NodeError):
                host.error_kind = error.kind.value
            continue
        for file in report.files:
            if file.condition is FileCondition.MISSING:
                host.files.append(FileResult(file.path, FileStatus.MISSING))
                continue
            host.files.append(
                FileResult(
                    file.path,
                    FileStatus.UNCHANGED,
                    file.fingerprint if file.explicit else None,
                    old_autogenerate=file.fingerprint is not None and not file.explicit,
                )
            )


def what_recovery_did(result: RunResult, recovered: Sequence[RunResult]) -> None:
    """Each host an unfinished run involved: finished, rolled back or cleaned up, recycled."""
    for earlier in recovered:
        if earlier.outcome is Outcome.CHECKED:
            continue
        for done in earlier.hosts:
            host = result.host(done.host)
            host.status = _DID.get(done.status, done.status)
            host.recycled = host.recycled or done.recycled


def what_recovery_would_do(state: RunState, reports: Mapping[str, NodeReport]) -> str:
    """``recover --check``: the decision recovery would take for one run, from the live files."""
    run = f"unfinished {state.kind} run {state.run_id}"
    if state.kind == RunKind.RESTORE:
        return f"{run}: would be closed; run the same `farmsync restore` again to finish it"
    if not state.commit_attempted:
        return f"{run}: no commit was released; would remove its staging files only"
    holds_new = True
    unknown: list[str] = []
    for host, paths in state.hosts.items():
        report = reports.get(host)
        if report is None or report.error is not None:
            unknown.append(host)
            continue
        live = {f.path: f.sha256 for f in report.files}
        for path in paths:
            progress = state.file(host, path)
            if live.get(path) != progress.new_sha256:
                holds_new = False
    if unknown:
        return (
            f"{run}: cannot tell yet ({', '.join(sorted(unknown))} not read); recovery needs "
            "every node it involves"
        )
    if holds_new:
        return f"{run}: every file holds the new key; would finish it (vault, recycle, cleanup)"
    hosts = ", ".join(sorted(state.hosts))
    return f"{run}: the nodes differ; would roll back {hosts} to their backups, then recycle"
