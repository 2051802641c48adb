"""What the audit rules share: the scopes to judge and where an attribute was set."""

from __future__ import annotations

from farmsync.orchestration.audit.model import AuditModel, KeyStatus, Scope, ScopeKind


def ok_scopes(model: AuditModel) -> list[Scope]:
    return [s for s in model.scopes() if s.state.status is KeyStatus.OK]


def where_set(scope: Scope, attribute: str) -> tuple[str, int | None]:
    """The file and line an effective attribute came from (the scope's file if defaulted)."""
    effective = scope.state.effective
    source = effective.source_of(attribute) if effective is not None else None
    if source is None:
        return scope.path, None
    return source.path, source.line


def application_of(scope: Scope) -> str | None:
    return scope.name if scope.kind is ScopeKind.APPLICATION else None
