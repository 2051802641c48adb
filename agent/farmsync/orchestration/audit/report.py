"""The audit's result: the model, its findings, the exit code, and its JSON form (schema 1).

Every format (terminal, JSON, Prometheus, HTML) is rendered from this object alone, and none
of them can reach a key value: the JSON form below is built from fingerprints and names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from farmsync.errors import ExitCode, NodeError, describe_error
from farmsync.orchestration.audit.model import (
    AuditModel,
    Finding,
    NodeModel,
    Scope,
    ScopeKind,
    Severity,
)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class KeyGroup:
    """Scopes that share one key (an AutoGenerate key is never shared: one group per node)."""

    identity: str
    fingerprint: str | None
    autogenerate: bool
    scopes: tuple[Scope, ...]


@dataclass
class AuditReport:
    model: AuditModel
    findings: list[Finding]
    fail_on: Severity = Severity.HIGH
    duration_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def unreachable(self) -> list[NodeModel]:
        return [n for n in self.model.nodes if not n.reachable]

    @property
    def exit_code(self) -> int:
        if self.unreachable:
            return ExitCode.CANNOT_START
        if any(f.severity.at_least(self.fail_on) for f in self.findings):
            return ExitCode.NODE_FAILURE
        return ExitCode.OK

    def counts(self) -> dict[str, int]:
        found = Counter(f.severity for f in self.findings)
        return {s.value: found.get(s, 0) for s in Severity}

    def applications(self) -> list[Scope]:
        return [s for s in self.model.scopes() if s.kind is ScopeKind.APPLICATION]

    def key_groups(self) -> list[KeyGroup]:
        """Scopes grouped by key, the largest group first."""
        groups: dict[str, list[Scope]] = {}
        for scope in self.model.scopes():
            if scope.state.identity is not None:
                groups.setdefault(scope.state.identity, []).append(scope)
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        return [
            KeyGroup(
                identity, scopes[0].state.fingerprint, scopes[0].state.autogenerate, tuple(scopes)
            )
            for identity, scopes in ordered
        ]

    def unknown_scopes(self) -> list[Scope]:
        return [s for s in self.model.scopes() if s.state.identity is None]

    def key_age_seconds(self) -> float | None:
        since = self.model.expected.since
        return (self.model.now - since).total_seconds() if since is not None else None

    def summary_line(self) -> str:
        counts = self.counts()
        found = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
        reachable = len(self.model.reachable())
        nodes = f"{reachable}/{len(self.model.nodes)} nodes read"
        return (
            f"audit {self.model.farm}: {nodes}, {len(self.applications())} application(s), "
            f"{len(self.key_groups())} distinct key(s), {found}"
        )

    # --- JSON, schema 1 (README "Audit") ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        expected = self.model.expected
        return {
            "schema": SCHEMA_VERSION,
            "kind": "audit",
            "farm": self.model.farm,
            "generated_at": self.model.now.isoformat(),
            "exit_code": self.exit_code,
            "fail_on": self.fail_on.value,
            "summary": {
                "nodes": len(self.model.nodes),
                "nodes_read": len(self.model.reachable()),
                "applications": len(self.applications()),
                "distinct_keys": len(self.key_groups()),
                "findings": self.counts(),
            },
            "expected": {
                "fingerprint": expected.identity,
                "source": expected.source,
                "run_id": expected.run_id,
                "since": expected.since.isoformat() if expected.since else None,
                "age_seconds": self.key_age_seconds(),
            },
            "keys": [
                {
                    "key": group.identity,
                    "fingerprint": group.fingerprint,
                    "autogenerate": group.autogenerate,
                    "scopes": [_scope_ref(s) for s in group.scopes],
                }
                for group in self.key_groups()
            ],
            "nodes": [_node(n) for n in self.model.nodes],
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def _scope_ref(scope: Scope) -> dict[str, str]:
    return {"host": scope.host, "kind": scope.kind.value, "name": scope.name, "path": scope.path}


def _scope(scope: Scope) -> dict[str, Any]:
    state = scope.state
    effective = state.effective
    sources = {}
    if effective is not None:
        sources = {
            name: {"path": src.path, "line": src.line, "location": src.location_path}
            for name, src in sorted(effective.sources.items())
        }
    key = state.key
    return {
        "kind": scope.kind.value,
        "name": scope.name,
        "path": scope.path,
        "root_config": scope.root_config,
        "framework": scope.framework,
        "bitness": scope.bitness,
        "pool": scope.pool,
        "physical_path": scope.physical_path,
        "status": state.status.value,
        "key": state.identity,
        "fingerprint": state.fingerprint,
        "autogenerate": state.autogenerate,
        "isolate_apps": state.isolated,
        "validation": key.validation if key is not None else None,
        "decryption": key.decryption if key is not None else None,
        "compatibility_mode": key.compatibility_mode if key is not None else None,
        "sources": sources,
        "reason": state.reason,
    }


def _node(node: NodeModel) -> dict[str, Any]:
    error = node.error
    return {
        "host": node.host,
        "platform": "windows" if node.windows else "posix",
        "reachable": node.reachable,
        "error": describe_error(error) if error is not None else None,
        "error_kind": error.kind.value if isinstance(error, NodeError) else None,
        "scopes": [_scope(s) for s in node.scopes],
        "files": [
            {
                "path": f.path,
                "role": f.role.value,
                "status": f.status,
                "error": f.error,
                "line": f.error_line,
                "encrypted": bool(f.facts and f.facts.encrypted),
                "backups": sum(1 for n in f.leftovers if n.endswith(".bak")),
                "staging_files": sum(1 for n in f.leftovers if n.endswith(".new")),
            }
            for f in node.files.values()
        ],
        "iis": (
            {
                "applications": len(node.iis.applications),
                "rsa_providers_in_use": node.iis.rsa_in_use(),
                "cng_providers_in_use": node.iis.cng_in_use(),
            }
            if node.iis is not None
            else None
        ),
        "registry": dict(node.registry) if node.registry is not None else None,
        "rsa": (
            {
                name: {"status": c.status, "fingerprint": c.fingerprint, "error": c.error}
                for name, c in sorted(node.rsa.items())
            }
            if node.rsa is not None
            else None
        ),
        "facts_error": node.facts_error,
        "round_trips": node.round_trips,
    }
