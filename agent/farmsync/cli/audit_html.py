"""The audit as one self-contained HTML page: the node x file/application matrix coloured by
key, the findings beneath. No external assets, no script; every text escaped."""

from __future__ import annotations

import hashlib
from html import escape

from farmsync.orchestration.audit.model import Scope, ScopeKind
from farmsync.orchestration.audit.report import AuditReport

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #bbb;padding:.3em .5em;font-size:.85em;vertical-align:top}
th{background:#eee;text-align:left}
td.key{font-family:monospace;color:#000}
td.none{background:#fafafa;color:#999}
td.unknown{background:repeating-linear-gradient(45deg,#ddd,#ddd 4px,#fff 4px,#fff 8px)}
tr.unreachable th{color:#b00}
.critical{background:#b00;color:#fff}.high{background:#e55;color:#fff}
.medium{background:#fc6}.low{background:#9cf}.info{background:#ddd}
"""


def colour_of(identity: str) -> str:
    """A stable light colour per key, so equal keys look equal at a glance."""
    hue = int(hashlib.sha256(identity.encode()).hexdigest()[:4], 16) % 360
    return f"hsl({hue},70%,80%)"


def column_of(scope: Scope) -> str:
    """The matrix column of a scope. A root config whose path names its own node (a lab's
    ``/srv/node1/...``) shares a column with its peers: ``/srv/{host}/...``."""
    label = scope.path if scope.kind is ScopeKind.ROOT else scope.name
    return label.replace(scope.host, "{host}")


def _columns(report: AuditReport) -> list[str]:
    return list(dict.fromkeys(column_of(s) for s in report.model.scopes()))


def _cell(host: str, column: str, scope: Scope | None) -> str:
    attrs = f'data-host="{escape(host)}" data-scope="{escape(column)}"'
    if scope is None:
        return f'<td class="none" {attrs} data-key="">&ndash;</td>'
    state = scope.state
    if state.identity is None:
        reason = escape(state.reason or state.status.value)
        return f'<td class="unknown" {attrs} data-key="" title="{reason}">{state.status.value}</td>'
    shown = state.fingerprint or "AutoGenerate"
    return (
        f'<td class="key" {attrs} data-key="{escape(state.identity)}" '
        f'style="background:{colour_of(state.identity)}">{escape(shown)}</td>'
    )


def render_html(report: AuditReport) -> str:
    model = report.model
    columns = _columns(report)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>farmsync audit {escape(model.farm)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>farmsync audit: {escape(model.farm)}</h1>",
        f'<p id="summary">{escape(report.summary_line())}</p>',
        f"<p>generated {escape(model.now.isoformat())}; expected key "
        f"{escape(model.expected.identity or 'none')} ({escape(model.expected.source)})</p>",
        '<table id="matrix"><thead><tr><th>node</th>',
    ]
    out += [f'<th data-scope="{escape(c)}">{escape(c)}</th>' for c in columns]
    out.append("</tr></thead><tbody>")
    for node in model.nodes:
        by_column = {column_of(s): s for s in node.scopes}
        row_class = "" if node.reachable else ' class="unreachable"'
        out.append(f'<tr{row_class} data-host="{escape(node.host)}"><th>{escape(node.host)}</th>')
        if not node.reachable:
            out.append(
                f'<td class="unknown" colspan="{max(len(columns), 1)}" data-host="'
                f'{escape(node.host)}">not read: {escape(str(node.error))}</td>'
            )
        else:
            out += [_cell(node.host, c, by_column.get(c)) for c in columns]
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append('<h2>Findings</h2><table id="findings"><thead><tr>')
    out.append("<th>severity</th><th>id</th><th>node</th><th>where</th><th>finding</th>")
    out.append("<th>what to do</th></tr></thead><tbody>")
    for f in report.findings:
        where = (f.path or "") + (f":{f.line}" if f.line else "")
        if f.application and f.application != f.path:
            where += f" [{f.application}]"
        controls = f" ({', '.join(f.controls)})" if f.controls else ""
        out.append(
            f'<tr data-id="{escape(f.id)}"><td class="{f.severity.value}">{f.severity.value}</td>'
            f"<td>{escape(f.id)}</td><td>{escape(f.host or 'farm')}</td><td>{escape(where)}</td>"
            f"<td>{escape(f.message + controls)}</td><td>{escape(f.action)}</td></tr>"
        )
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"
