"""The audit for people: a summary line, the farm grouped by key, the findings worst first.
Colour only on a terminal (rich decides, and honours NO_COLOR); never a key value."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from farmsync.orchestration.audit.model import Finding, Scope, ScopeKind, Severity
from farmsync.orchestration.audit.report import AuditReport

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _scope_text(scope: Scope) -> str:
    if scope.kind is ScopeKind.ROOT:
        return f"{scope.host}: root {scope.path}"
    if scope.name == scope.path:
        return f"{scope.host}: app {scope.path}"
    return f"{scope.host}: app {scope.name} ({scope.path})"


def _where(finding: Finding) -> str:
    parts = [finding.host or "farm"]
    if finding.path:
        parts.append(finding.path + (f":{finding.line}" if finding.line else ""))
    if finding.application and finding.application != finding.path:
        parts.append(f"[app {finding.application}]")
    return " ".join(parts)


def render_audit(report: AuditReport, console: Console) -> None:
    colour = "green" if report.exit_code == 0 else "red"
    console.print(f"[{colour}]{escape(report.summary_line())}[/]")
    expected = report.model.expected
    if expected.identity:
        basis = f"run {expected.run_id}" if expected.source == "journal" else expected.source
        console.print(f"expected key: {escape(expected.identity)} (from {escape(basis)})")
    for note in report.notes:
        console.print(f"note: {escape(note)}", style="dim")
    for node in report.unreachable:
        console.print(f"[red]{escape(node.host)}: not read: {escape(str(node.error))}[/]")
    for group in report.key_groups():
        name = group.fingerprint or f"AutoGenerate ({group.identity.split(':', 1)[1]})"
        hosts = sorted({s.host for s in group.scopes})
        marker = "" if group.identity != expected.identity else " [green](expected)[/]"
        console.print(
            f"[bold]{escape(name)}[/]{marker}: {len(hosts)} node(s), {len(group.scopes)} place(s)"
        )
        for scope in group.scopes:
            console.print(f"  {escape(_scope_text(scope))}")
    unknown = report.unknown_scopes()
    if unknown:
        console.print(f"[bold]unknown[/]: {len(unknown)} place(s)")
        for scope in unknown:
            reason = scope.state.reason or scope.state.status.value
            reason = reason.removeprefix(scope.path + ": ")
            console.print(f"  {escape(_scope_text(scope))}: {escape(reason)}")
    if report.findings:
        console.print("findings:")
    for finding in report.findings:
        style = SEVERITY_STYLE[finding.severity]
        controls = f" [{', '.join(finding.controls)}]" if finding.controls else ""
        console.print(
            f"[{style}]{finding.severity.value.upper():8}[/] {escape(finding.id)} "
            f"{escape(_where(finding))}: {escape(finding.message)}{escape(controls)}"
        )
        console.print(f"         -> {escape(finding.action)}")
