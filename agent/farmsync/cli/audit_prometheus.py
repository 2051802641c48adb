"""The audit as a node_exporter textfile-collector file, replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path

from farmsync.fsutil import atomic_write_private
from farmsync.orchestration.audit.model import Severity
from farmsync.orchestration.audit.report import AuditReport

METRICS = {
    "farmsync_audit_nodes": "Nodes in the audit (after --limit).",
    "farmsync_audit_distinct_keys": "Distinct keys in effect (each AutoGenerate key counts).",
    "farmsync_audit_findings": "Findings of the last audit, by severity.",
    "farmsync_key_age_seconds": "Age of the farm key, from the journal's run times.",
    "farmsync_audit_last_run_timestamp_seconds": "When the last audit ran (Unix time).",
    "farmsync_audit_success": "1 when every node was read, else 0.",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(report: AuditReport) -> str:
    farm = f'farm="{_label(report.model.farm)}"'
    samples: dict[str, list[str]] = {name: [] for name in METRICS}
    samples["farmsync_audit_nodes"].append(f"{{{farm}}} {len(report.model.nodes)}")
    samples["farmsync_audit_distinct_keys"].append(f"{{{farm}}} {len(report.key_groups())}")
    counts = report.counts()
    for severity in Severity:
        samples["farmsync_audit_findings"].append(
            f'{{{farm},severity="{severity.value}"}} {counts[severity.value]}'
        )
    age = report.key_age_seconds()
    if age is not None:
        samples["farmsync_key_age_seconds"].append(f"{{{farm}}} {age:.0f}")
    samples["farmsync_audit_last_run_timestamp_seconds"].append(
        f"{{{farm}}} {report.model.now.timestamp():.0f}"
    )
    samples["farmsync_audit_success"].append(f"{{{farm}}} {0 if report.unreachable else 1}")
    lines: list[str] = []
    for name, help_text in METRICS.items():
        if not samples[name]:
            continue  # unknown (no journal): absent rather than a made-up value
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [name + sample for sample in samples[name]]
    return "\n".join(lines) + "\n"


def write_prometheus(report: AuditReport, path: Path) -> None:
    """Replace ``path`` whole (node_exporter never sees half a file), readable by the exporter."""
    atomic_write_private(path, render_prometheus(report).encode("utf-8"))
    os.chmod(path, 0o644)  # metrics, not secrets: node_exporter usually runs as another user
