"""What ``farmsync doctor`` shows: one table (or ``--json``), a one-line fix per problem on
stderr, and the exit code: 0 every node ready, 1 some not ready, 3 some unreachable."""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from farmsync.cli.output import print_json
from farmsync.orchestration.doctor import NodeReport, Readiness, exit_code

_STATUS_STYLE = {
    Readiness.READY: "green",
    Readiness.NOT_READY: "yellow",
    Readiness.UNREACHABLE: "red",
}


def _files(report: NodeReport) -> str:
    lines = []
    for entry in report.facts.get("files", []):
        mark = "ok" if entry.get("replaceable") else "NO"
        free = entry.get("free_bytes")
        room = f", {free // (1 << 20)} MiB free" if isinstance(free, int) else ""
        lines.append(f"{mark} {entry.get('path')}{room}")
    return "\n".join(lines)


def _shell(report: NodeReport) -> str:
    facts = report.facts
    parts = [f"{facts.get('os') or ''} ({facts.get('shell')} shell)" if facts.get("os") else ""]
    if facts.get("powershell"):
        parts.append(
            f"PowerShell {facts['powershell']}, .NET {facts.get('dotnet')}, "
            f"{facts.get('language_mode')}"
        )
    elif facts.get("agent"):
        parts.append(str(facts["agent"]))
    flags = []
    for name, label in (
        ("fips", "FIPS"),
        ("module_logging", "module logging"),
        ("script_block_logging", "script block logging"),
    ):
        if facts.get(name) is not None:
            flags.append(f"{label} {'on' if facts[name] else 'off'}")
    if flags:
        parts.append(", ".join(flags))
    return "\n".join(p for p in parts if p)


def _iis(report: NodeReport) -> str:
    iis = report.facts.get("iis")
    if not isinstance(iis, dict):
        return "-"
    if not iis.get("installed"):
        return "not installed"
    pools = [
        f"{p.get('name')} ({p.get('state')}, {p.get('runtime') or 'no managed code'}, "
        f"{p.get('bitness')}-bit)"
        for p in iis.get("pools", [])
    ]
    return "\n".join([f"WAS {iis.get('was')}", *pools])


def render_table(reports: list[NodeReport], out: Console) -> None:
    table = Table(title="farmsync doctor")
    for column in ("host", "status", "login", "identity", "system", "root web.config", "IIS"):
        table.add_column(column)
    table.add_column("clock", justify="right")
    for report in reports:
        facts = report.facts
        skew = facts.get("clock_skew_s")
        style = _STATUS_STYLE[report.status]
        table.add_row(
            escape(report.host),
            f"[{style}]{report.status.value}[/]",
            escape(str(facts.get("auth") or report.error_kind or "")),
            escape(str(facts.get("verified") or "")),
            escape(_shell(report) or (report.error or "")),
            escape(_files(report)),
            escape(_iis(report)),
            f"{skew:+.1f} s" if isinstance(skew, float | int) else "-",
        )
    out.print(table)


def show(reports: list[NodeReport], as_json: bool, out: Console) -> int:
    code = exit_code(reports)
    if as_json:
        print_json({"exit_code": code, "hosts": [r.to_dict() for r in reports]}, out.file)
        return code
    render_table(reports, out)
    for report in reports:
        for problem in report.problems:
            click.echo(f"farmsync: {report.host}: {problem.what}; fix: {problem.fix}", err=True)
        if report.status is Readiness.UNREACHABLE:
            click.echo(f"farmsync: {report.host}: unreachable: {report.error}", err=True)
        for note in report.notes:
            click.echo(f"farmsync: {report.host}: note: {note}", err=True)
    ready = sum(1 for r in reports if r.status is Readiness.READY)
    out.print(f"{ready} of {len(reports)} node(s) ready")
    return code
