"""Turning results into text for people, or JSON for machines. Fingerprints only, never keys."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from farmsync.orchestration.result import Outcome, RunResult

_STYLE = {
    "changed": "green",
    "unchanged": "dim",
    "would-change": "yellow",
    "failed": "red",
    "unreachable": "red",
    "rolled-back": "yellow",
    "missing": "dim",
}


def print_json(data: Any, console: Console) -> None:
    console.file.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def render_run(result: RunResult, console: Console) -> None:
    table = Table(title=f"{result.kind} {result.farm} (run {result.run_id})", expand=False)
    table.add_column("host")
    table.add_column("status")
    table.add_column("file", overflow="fold")
    table.add_column("old key")
    table.add_column("new key")
    for host in result.hosts:
        status = Text(host.status, style=_STYLE.get(host.status, ""))
        rows = [(f.path, f.old_fingerprint or "", f.new_fingerprint or "") for f in host.files]
        for index, (path, old, new) in enumerate(rows or [("", "", "")]):
            first = index == 0
            table.add_row(
                Text(host.host) if first else "", status if first else "", Text(path), old, new
            )
        if host.error:
            table.add_row("", "", Text(host.error, style="red"), "", "")
    if result.hosts:
        console.print(table)
    for host in result.hosts:
        for file in host.files:
            if file.diff:
                console.print(escape(file.diff), highlight=False)
    if result.commit_window_ms is not None:
        console.print(
            f"commit window (first release to last ack): {result.commit_window_ms:.1f} ms; "
            f"release span {result.release_span_ms:.1f} ms"
        )
    if result.mtime_skew_ms is not None:
        console.print(
            f"file mtime skew {result.mtime_skew_ms:.0f} ms "
            f"(mtimes read to {result.mtime_resolution_ms:g} ms)"
        )
    for message in result.messages:
        console.print(escape(message), highlight=False)
    colour = "green" if result.exit_code == 0 else "red"
    target = f" ({result.target_fingerprint})" if result.target_fingerprint else ""
    console.print(f"[{colour}]{_headline(result)}[/]{target}")


def _headline(result: RunResult) -> str:
    if result.kind in ("restore", "recover") and result.outcome is Outcome.CHANGED:
        return "done"
    if result.kind == "recover" and result.outcome is Outcome.UNCHANGED:
        return "no run left unfinished"
    return {
        Outcome.CHANGED: "done: every node holds the new key",
        Outcome.UNCHANGED: "nothing to do",
        Outcome.CHECKED: "check only: nothing was changed",
        Outcome.ROLLED_BACK: "failed: every changed node was rolled back to its old key",
        Outcome.ABORTED: "failed before any live file changed: the farm is as it was",
        Outcome.NOT_STARTED: "not started: nothing was changed",
        Outcome.BAD_INPUT: "bad input: nothing was changed",
        Outcome.INCONSISTENT: "the farm is NOT consistent: run `farmsync recover`",
        Outcome.RECYCLE_FAILED: "keys consistent, but some node failed to recycle",
    }[result.outcome]
