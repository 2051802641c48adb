"""Turning results into text for people, or JSON for machines. Fingerprints only, never keys.

Every line says only what happened: the closing line names hosts a ``--limit`` left out, a
run that did not start shows no key it never stored, and tables fit the terminal by
shortening paths in the middle, never by cutting a fingerprint or a run id.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from farmsync.cli.printable import markup, printable, printable_lines
from farmsync.orchestration.journal import RunKind
from farmsync.orchestration.result import FileResult, FileStatus, HostStatus, Outcome, RunResult

_STYLE = {
    "changed": "green",
    "unchanged": "dim",
    "would-change": "yellow",
    "failed": "red",
    "not-started": "dim",
    "rolled-back": "yellow",
    "missing": "dim",
    "accepted": "yellow",  # recover --accept-current: taken as it is
}
AUTOGENERATE = "AutoGenerate"  # a key per node: never shown as one fingerprint
MIN_PATH = 16


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle, keeping both ends."""
    if len(text) <= width:
        return text
    if width < 3:
        return text[:width]
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail :]


def shorten_paths(paths: list[str], width: int) -> dict[str, str]:
    """Each path in at most ``width`` characters. Folders every path shares are left out
    first (``%windir%\\…\\Framework64\\…\\web.config``), so what tells two paths apart
    stays; the first and last components stay too. Then the middle is cut."""
    shown: dict[str, str] = {}
    for path in paths:
        if len(path) <= width:
            shown[path] = path
            continue
        sep = "\\" if path.count("\\") > path.count("/") else "/"
        parts = path.split(sep)
        shared = [
            i
            for i in range(1, len(parts) - 1)
            if all(len(p.split(sep)) == len(parts) and p.split(sep)[i] == parts[i] for p in paths)
        ]
        elided: set[int] = set()
        text = path
        for index in shared:
            elided.add(index)
            text = _join_elided(parts, elided, sep)
            if len(text) <= width:
                break
        shown[path] = shorten_middle(text, width)
    return shown


def _join_elided(parts: list[str], elided: set[int], sep: str) -> str:
    out: list[str] = []
    for i, part in enumerate(parts):
        if i in elided:
            if not out or out[-1] != "…":
                out.append("…")
        else:
            out.append(part)
    return sep.join(out)


def _old_key(file: FileResult) -> str:
    if file.status is FileStatus.MISSING:
        return "missing"
    if file.old_autogenerate:
        return AUTOGENERATE
    return file.old_fingerprint or ""


def _new_key(file: FileResult, result: RunResult) -> str:
    if file.new_fingerprint:
        return file.new_fingerprint
    if file.status is FileStatus.WOULD_CHANGE and result.kind is RunKind.ROTATE:
        return "(new key)"
    return ""


Row = tuple[str, str, str, str, str, bool]  # host, status, file, old key, new key, first


def _rows(result: RunResult) -> list[Row]:
    rows: list[Row] = []
    for host in result.hosts:
        files = host.files or [FileResult("", FileStatus.UNCHANGED)]
        for index, file in enumerate(files):
            # A failed host's status is what went wrong: auth, host-key, is-directory, ...
            failed = host.status in (HostStatus.FAILED, HostStatus.UNREACHABLE)
            status = host.error_kind if failed and host.error_kind else str(host.status)
            row = (host.host, status, file.path, _old_key(file), _new_key(file, result))
            rows.append((*row, index == 0))
    return rows


def _widest(header: str, values: list[str]) -> int:
    return max([len(header), *(len(v) for v in values)])


def run_table(result: RunResult, width: int | None) -> Table:
    """The per-host table. With ``width`` it fits that many columns: paths are shortened in
    the middle, and when even that leaves too little room each file goes on a line of its
    own under its host. Fingerprints, host names and the run id are never cut."""
    rows = _rows(result)
    title = f"{result.kind} {markup(result.farm)} (run {result.run_id})"
    table = Table(title=title, expand=False, box=box.SQUARE)
    by_host = {h.host: h for h in result.hosts}
    hosts_w = _widest("host", [r[0] for r in rows])
    status_w = _widest("status", [r[1] for r in rows])
    old_w = _widest("old key", [r[3] for r in rows])
    new_w = _widest("new key", [r[4] for r in rows])
    path_width: int | None = None
    if width is not None:
        # Five columns: 2 padding each, 6 vertical rules.
        path_width = width - (hosts_w + status_w + old_w + new_w) - 5 * 2 - 6
    if path_width is not None and path_width < MIN_PATH:
        assert width is not None
        news = {r[4] for r in rows if r[4]}
        # One new key for every file is the closing line's: no column needed to repeat it.
        drop_new = news == {result.target_fingerprint}
        rest = status_w + old_w + (0 if drop_new else new_w)
        columns = 3 if drop_new else 4
        first_w = width - rest - columns * 2 - (columns + 1)
        return _stacked_table(table, rows, result, first_w, drop_new)
    table.add_column("host", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("file", overflow="fold")
    table.add_column("old key", no_wrap=True)
    table.add_column("new key", no_wrap=True)
    short = shorten_paths([r[2] for r in rows], path_width) if path_width else {}
    for name, status, path, old, new, first in rows:
        shown = short.get(path, path)
        table.add_row(
            Text(printable(name)) if first else "",
            Text(status, style=_STYLE.get(status, "red")) if first else "",
            Text(printable(shown)),
            old,
            new,
        )
        host = by_host[name]
        if _own_error(host.error, result) and first and len(host.files) <= 1:
            table.add_row("", "", Text(printable(host.error or ""), style="red"), "", "")
    for host in result.hosts:
        if _own_error(host.error, result) and len(host.files) > 1:
            error = Text(printable(host.error or ""), style="red")
            table.add_row(Text(printable(host.host)), "", error, "", "")
    return table


def _stacked_table(
    table: Table, rows: list[Row], result: RunResult, first_w: int, drop_new: bool
) -> Table:
    """A host on one line, each of its files indented on the lines below."""
    first_w = max(first_w, 12)
    table.add_column("host / file", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("old key", no_wrap=True)
    if not drop_new:
        table.add_column("new key", no_wrap=True)
    by_host = {h.host: h for h in result.hosts}
    short = shorten_paths([r[2] for r in rows], first_w - 2)
    blank = [""] * (2 if drop_new else 3)
    for name, status, path, old, new, first in rows:
        if first:
            shown = Text(status, style=_STYLE.get(status, "red"))
            table.add_row(Text(printable(name)), shown, *blank[1:])
            host = by_host[name]
            if _own_error(host.error, result):
                table.add_row(Text(printable(host.error or ""), style="red"), *blank)
        if path:
            keys = [old] if drop_new else [old, new]
            table.add_row(Text("  " + printable(short[path])), "", *keys)
    return table


def _own_error(error: str | None, result: RunResult) -> bool:
    """An error worth its own table row: not one the run's messages already say."""
    return error is not None and not any(error in message for message in result.messages)


def render_run(
    result: RunResult,
    console: Console,
    *,
    messages: bool = True,
    table: bool = True,
    timings: bool = False,
) -> None:
    """The ``table``, diffs, the commit window, per-phase ``timings``, ``messages`` (when
    the caller does not print them elsewhere) and one closing line."""
    if result.hosts and table:
        width = console.width if console.is_terminal else None
        console.print(run_table(result, width))
    for host in result.hosts:
        for file in host.files:
            if file.diff:
                console.print(Text(printable_lines(file.diff)), highlight=False)
    if result.commit_window_ms is not None and table:
        console.print(
            f"commit window (files differ across nodes): {result.commit_window_ms:.1f} ms; "
            f"release span {result.release_span_ms:.1f} ms"
        )
    if result.mtime_skew_ms is not None and table:
        console.print(
            f"file mtime skew {result.mtime_skew_ms:.0f} ms "
            f"(mtimes read to {result.mtime_resolution_ms:g} ms)"
        )
    if timings and result.phase_ms:
        console.print(
            "phases: " + ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in result.phase_ms.items())
        )
    if messages:
        for message in result.messages:
            console.print(markup(message), highlight=False)
    colour = "green" if result.exit_code == 0 else "red"
    console.print(f"[{colour}]{markup(headline(result))}[/]", soft_wrap=True)


def headline(result: RunResult) -> str:
    """The closing line: what the run did, to which hosts, and with which key."""
    fp = result.target_fingerprint
    outcome = result.outcome
    left = ""
    if result.left_out:
        left = (
            f"; not touched (--limit): {', '.join(result.left_out)}: "
            "`farmsync sync` puts the vault's key on them"
        )
    if result.kind is RunKind.RECOVER:
        return _recover_headline(result)
    if result.kind is RunKind.RESTORE and result.summary:
        if outcome is Outcome.CHANGED:
            return f"done: {result.summary}"
        if outcome is Outcome.CHECKED:
            return f"check only: nothing was changed; {result.summary}"
    if outcome is Outcome.CHANGED:
        which = {
            RunKind.ROTATE: f"the new key {fp}",
            RunKind.ROLLBACK: f"the previous key {fp}",
            RunKind.SYNC: f"the vault's key {fp}",
        }.get(result.kind, f"key {fp}")
        if result.left_out:
            return f"done: the selected nodes hold {which}{left}"
        return f"done: every node holds {which}"
    if outcome is Outcome.UNCHANGED:
        if fp and result.kind in (RunKind.SYNC, RunKind.ROLLBACK):
            return f"nothing to do: the selected nodes already hold {fp}{left}"
        return "nothing to do" + left
    if outcome is Outcome.CHECKED:
        if result.kind is RunKind.ROTATE and fp is None:
            return "check only: nothing was changed (a new key, generated when the run starts)"
        return (
            f"check only: nothing was changed ({fp})" if fp else "check only: nothing was changed"
        )
    return {
        Outcome.ROLLED_BACK: "failed: every changed node was rolled back to its old key",
        Outcome.ABORTED: "failed before any live file changed: the farm is as it was",
        Outcome.NOT_STARTED: "not started: nothing was changed",
        Outcome.BAD_INPUT: "bad input: nothing was changed",
        Outcome.INCONSISTENT: "the farm is NOT consistent: run `farmsync recover`",
        Outcome.RECYCLE_FAILED: "keys consistent, but some node failed to recycle",
    }[outcome]


def _recover_headline(result: RunResult) -> str:
    if result.outcome is Outcome.CHECKED:
        return "check only: nothing was changed"
    if result.outcome is Outcome.NOT_STARTED:
        return "not started: nothing was changed"
    did = "recovered; " if result.outcome is Outcome.CHANGED else ""
    if result.target_fingerprint:
        return f"{did}no run left unfinished; every node holds {result.target_fingerprint}"
    return f"{did}no run left unfinished"
