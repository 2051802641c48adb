"""The key the farm is expected to hold, decided without any secret: the target fingerprint of
the journal's last finished run that changed the farm, else the farm's majority."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from farmsync.orchestration.audit.model import Expected, NodeModel, ScopeKind
from farmsync.orchestration.journal import RunKind, RunState
from farmsync.orchestration.result import Outcome

# Runs that put a key on the farm; an end with these outcomes means every node of the run
# holds its target key (the outcome is the run-end record's detail).
_DEPLOYING = (RunKind.ROTATE, RunKind.SYNC, RunKind.ROLLBACK)
_DEPLOYED = (Outcome.CHANGED.value, Outcome.RECYCLE_FAILED.value)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_journal(runs: Sequence[RunState]) -> Expected | None:
    """The last finished deploying run's target, and since when the farm has held it."""
    current: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    for run in runs:
        if run.kind not in _DEPLOYING or not run.finished or not run.target_fp:
            continue
        if run.end_detail not in _DEPLOYED:
            continue
        if run.target_fp != current:
            current, since = run.target_fp, _time(run.ended_at)
        run_id = run.run_id
    if current is None:
        return None
    return Expected(current, "journal", run_id, since)


def from_majority(nodes: Sequence[NodeModel]) -> Expected:
    """The explicit key most root configs hold (ties: none is expected)."""
    counts = Counter(
        scope.state.identity
        for node in nodes
        for scope in node.scopes
        if scope.kind is ScopeKind.ROOT and scope.state.fingerprint is not None
    )
    ranked = counts.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return Expected(None, "none")
    return Expected(ranked[0][0], "majority")


def expected_key(runs: Sequence[RunState], nodes: Sequence[NodeModel]) -> Expected:
    return from_journal(runs) or from_majority(nodes)
