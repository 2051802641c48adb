"""Runs staged on the nodes by another controller: seen, named, never staged over.

The farm lock (flock) protects one controller. A run of another controller shows on the
nodes as ``<file>.farmsync-<run>.new`` staging files of a run this controller's journal does
not know. A rollout reads them in its first round trip (the read-only ``audit`` op returns
the farmsync files beside each file it reads, so it costs no extra round trip) and refuses to
start while one is there. They are removed only on purpose: ``--clear-staged RUN``, when
the operator knows that controller is gone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from farmsync.errors import ExitCode, FarmsyncError, NodeError, NodeErrorKind
from farmsync.nodes.auditread import AuditRequest
from farmsync.nodes.contract import FileState, NodeOperations
from farmsync.orchestration.pool import run_each

if TYPE_CHECKING:
    from farmsync.orchestration.options import RolloutOptions
    from farmsync.orchestration.session import FarmSession

_STAGED = re.compile(r"\.farmsync-([A-Za-z0-9][A-Za-z0-9_.-]{0,99})\.new$")


class StagedRunError(FarmsyncError):
    """Another run's staging files are on the nodes: refuse to stage over them."""

    exit_code = ExitCode.CANNOT_START


def read_with_staged(
    node: NodeOperations, paths: Sequence[str]
) -> tuple[dict[str, FileState], tuple[str, ...]]:
    """``read``'s answer and the run ids staged beside ``paths``, in one round trip."""
    try:
        found = node.audit(AuditRequest(tuple(paths)))
    except NodeError as exc:
        if exc.kind is not NodeErrorKind.PROTOCOL:
            raise
        return node.read(paths), ()  # a transport without the audit op: no staged runs seen
    runs = sorted(
        {
            match.group(1)
            for names in found.leftovers.values()
            for name in names
            if (match := _STAGED.search(name))
        }
    )
    return {p: found.files[p] for p in paths}, tuple(runs)


def check_staged(staged: Mapping[str, Sequence[str]], own_run: str, cleared: Sequence[str]) -> None:
    """Refuse (exit 3) when a host holds another run's staging files not ``cleared``."""
    foreign: dict[str, list[str]] = {}
    for host, runs in sorted(staged.items()):
        for run in runs:
            if run != own_run and run not in cleared:
                foreign.setdefault(run, []).append(host)
    if not foreign:
        return
    named = "; ".join(f"run {run} on {', '.join(hosts)}" for run, hosts in foreign.items())
    first = next(iter(foreign))
    raise StagedRunError(
        f"another run is staged on the nodes: {named}. Another controller may be rolling "
        "out a key right now (its lock is on that controller, not this one); nothing was "
        "changed. If that controller is gone, remove its staging files with "
        f"`--clear-staged {first}` (or run `farmsync recover --clear-staged {first}`)"
    )


def clear_staged_runs(
    session: FarmSession,
    staged: Mapping[str, Sequence[str]],
    runs: Sequence[str],
    options: RolloutOptions,
) -> list[str]:
    """Remove ``runs``' staging files from the hosts that hold them; what was done, per host."""
    said: list[str] = []
    for run in runs:
        holders = {n: session.nodes[n] for n, held in staged.items() if run in held}

        def work(name: str, node: NodeOperations, run: str = run) -> None:
            node.cleanup(list(session.hosts[name].root_configs), run, options.keep_backups)

        for name, outcome in sorted(run_each(holders.items(), work, options.forks).items()):
            done = "removed" if outcome.ok else f"could not remove ({outcome.error})"
            said.append(f"{name}: {done} the staging files of run {run}")
    return said
