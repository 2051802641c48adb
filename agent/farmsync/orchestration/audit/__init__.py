"""``farmsync audit``: every key any application on any node really uses, and findings.

Layout: ``run`` reads the nodes (one read-only round trip each), ``resolve`` turns each
node's answer into scopes with effective keys, ``expected`` decides the farm's key from the
journal, ``rules`` judges (one rule, one id), ``report`` holds the result and its JSON form.
Renderers live in the CLI layer and read only the report.
"""

from farmsync.orchestration.audit.model import Finding, Severity
from farmsync.orchestration.audit.report import SCHEMA_VERSION, AuditReport
from farmsync.orchestration.audit.run import AuditOptions, run_audit

__all__ = ["SCHEMA_VERSION", "AuditOptions", "AuditReport", "Finding", "Severity", "run_audit"]
