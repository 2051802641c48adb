"""``farmsync audit``: every key any application on any node really uses, and findings.

Layout: ``run`` reads the nodes (one read-only round trip each), ``resolve`` turns each
node's answer into scopes with effective keys, ``expected`` decides the farm's key from the
journal, ``rules`` judges (one rule, one id), ``report`` holds the result and its JSON form,
``options`` what an audit is asked for. Renderers live in the CLI layer and read only the
report.

The names below are loaded on first use, so importing ``options`` (what ``farmsync audit
--help`` needs) does not load the nodes, the rules and the reader.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farmsync.orchestration.audit.model import Finding
    from farmsync.orchestration.audit.options import AuditOptions, Severity
    from farmsync.orchestration.audit.report import SCHEMA_VERSION, AuditReport
    from farmsync.orchestration.audit.run import run_audit

_WHERE = {
    "SCHEMA_VERSION": "report",
    "AuditOptions": "options",
    "AuditReport": "report",
    "Finding": "model",
    "Severity": "options",
    "run_audit": "run",
}
__all__ = ["SCHEMA_VERSION", "AuditOptions", "AuditReport", "Finding", "Severity", "run_audit"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
