"""What an interrupted run says: the state it left the farm in, and the next command."""

from __future__ import annotations

from farmsync.orchestration.result import Outcome, RunResult


def explain_interrupt(result: RunResult, signal_name: str) -> None:
    """Mark ``result`` interrupted (exit 130) and say what was decided and what comes next."""
    result.interrupted = signal_name
    said = {
        Outcome.ABORTED: (
            "before any live file changed: withdrew the armed commits and removed the staging "
            "files; the farm is as it was. Next: run the same command again"
        ),
        Outcome.NOT_STARTED: (
            "before any live file changed; the farm is as it was. Next: run the same command again"
        ),
        Outcome.ROLLED_BACK: (
            "during the commit: let every released node finish, then rolled every changed node "
            "back to its old key; the farm is on its old key. Next: run the same command again"
        ),
        Outcome.INCONSISTENT: (
            "during the commit, and not every node could be rolled back: the run is left open. "
            "Next: `farmsync recover`"
        ),
        Outcome.CHANGED: (
            "after the change was complete: every node holds the new key. Nothing to do"
        ),
        Outcome.RECYCLE_FAILED: (
            "after the change was complete: every node holds the new key, a recycle failed. "
            "Next: recycle that node by hand"
        ),
        Outcome.CHECKED: "before anything changed (a check changes nothing). Next: run it again",
        Outcome.UNCHANGED: "with nothing to change; the farm is as it was. Nothing to do",
    }.get(result.outcome, "(the table shows where each node is)")
    result.messages.append(f"interrupted by {signal_name} {said}")
