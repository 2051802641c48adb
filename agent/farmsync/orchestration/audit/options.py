"""What an audit is asked for: its options and the severity scale they name.

Light to import (no node, rule or renderer), so ``farmsync audit --help`` can show the
defaults and the choices of ``--fail-on`` without loading the audit itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from farmsync.nodes.contract import DEFAULT_COMMIT_TIMEOUT
from farmsync.orchestration.options import DEFAULT_FORKS


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)  # 0 is the worst

    def at_least(self, other: Severity) -> bool:
        return self.rank <= other.rank


@dataclass(frozen=True)
class AuditOptions:
    forks: int = DEFAULT_FORKS
    timeout: float = DEFAULT_COMMIT_TIMEOUT  # the longest wait for one node (caps farmsync_timeout)
    fail_on: Severity = Severity.HIGH
