"""Audit rules about the key itself: disclosed, ViewState MAC off, drift, overrides,
AutoGenerate. Each a small pure function over the model, with one stable id.

Key values are read here (to check them against the disclosed list) and never put into a
finding: findings name fingerprints, files and lines."""

from __future__ import annotations

from collections.abc import Iterator

from farmsync.keys.machinekey import MachineKey
from farmsync.orchestration.audit.model import (
    AuditModel,
    FileRole,
    Finding,
    KeyStatus,
    Scope,
    ScopeKind,
    Severity,
    key_identity,
)
from farmsync.orchestration.audit.rules_support import application_of, ok_scopes, where_set
from farmsync.webconfig.effective import KeyElement


def disclosed_key(model: AuditModel) -> Iterator[Finding]:
    """Every <machineKey> element on any level whose key is on a disclosed-keys list."""
    if model.disclosed is None:
        return
    for node in model.reachable():
        for config in node.files.values():
            for element in config.facts.keys if config.facts is not None else ():
                which = model.disclosed.check(element.key)
                if which is None:
                    continue
                what = "both keys are" if which == "both" else f"the {which} key is"
                where = f" (<location path={element.location_path!r}>)" if element.scope else ""
                yield Finding(
                    "disclosed-key",
                    Severity.CRITICAL,
                    f"{what} publicly disclosed ({element.key.fingerprint()}){where}",
                    "Rotate now (`farmsync rotate`), then remove this element or let it inherit "
                    "the farm key: anyone holding a disclosed key can forge ViewState.",
                    node.host,
                    config.path,
                    element.line,
                )


def viewstate_mac_disabled(model: AuditModel) -> Iterator[Finding]:
    """The registry value, aspnet:AllowInsecureDeserialization, enableViewStateMac=false."""
    for node in model.reachable():
        for view, value in sorted((node.registry or {}).items()):
            if value == 0:
                yield Finding(
                    "viewstate-mac-disabled",
                    Severity.CRITICAL,
                    f"AspNetEnforceViewStateMac is 0 in the {view}-bit registry view",
                    "Delete the AspNetEnforceViewStateMac value (or set it to 1) under "
                    r"HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319 and restart IIS.",
                    node.host,
                    r"HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319",
                )
        for config in node.files.values():
            facts = config.facts
            if facts is None:
                continue
            for hit in (*facts.insecure_deserialization, *facts.viewstate_mac_off):
                yield Finding(
                    "viewstate-mac-disabled",
                    Severity.CRITICAL,
                    f"{hit.what} turns the ViewState MAC off",
                    "Remove this setting: without the MAC, forged ViewState is deserialized.",
                    node.host,
                    config.path,
                    hit.line,
                )


def key_drift(model: AuditModel) -> Iterator[Finding]:
    """A root config (node, framework, bitness) whose key is not the farm's expected key.
    Applications whose root is not managed count too; overrides have their own rule."""
    expected = model.expected.identity
    if expected is None:
        yield from _drift_without_expected(model)
        return
    how = {
        "journal": f"the journal's last run {model.expected.run_id}",
        "majority": "the farm majority",
    }
    basis = how.get(model.expected.source, model.expected.source)
    for node in model.reachable():
        managed = {s.path for s in node.root_scopes()}
        for scope in node.scopes:
            if scope.state.status is not KeyStatus.OK or scope.state.identity == expected:
                continue
            if scope.kind is ScopeKind.APPLICATION and (
                scope.root_config in managed or _overrides(scope)
            ):
                continue
            shown = scope.state.fingerprint or "an AutoGenerate key of this node"
            path, line = where_set(scope, "validationKey")
            yield Finding(
                "key-drift",
                Severity.HIGH,
                f"holds {shown}, not the expected {expected} ({basis})",
                "Run `farmsync sync` to put the farm's key back on this node.",
                node.host,
                path,  # where the key in effect is set (for an application: what it inherits)
                line,
                application_of(scope),
            )


def _drift_without_expected(model: AuditModel) -> Iterator[Finding]:
    """No journal and no majority: several keys with none ahead is drift everywhere."""
    roots = [s for s in ok_scopes(model) if s.kind is ScopeKind.ROOT]
    identities = sorted({s.state.identity for s in roots if s.state.identity})
    if len(identities) < 2:
        return
    for scope in roots:
        path, line = where_set(scope, "validationKey")
        yield Finding(
            "key-drift",
            Severity.HIGH,
            f"holds {scope.state.fingerprint or 'an AutoGenerate key of this node'}; the farm "
            f"holds {len(identities)} different keys and none is a majority",
            "Run `farmsync rotate` to give every node one new key.",
            scope.host,
            path,
            line,
        )


def _overrides(scope: Scope) -> list[KeyElement]:
    """Elements below the root config's own key (a matching <location>, the application's
    web.config) that set a key attribute for this scope."""
    effective = scope.state.effective
    if effective is None or scope.kind is not ScopeKind.APPLICATION:
        return []
    found = [e for e in effective.elements if (e.scope or e.source == scope.path) and e.attributes]
    inherited: dict[str, str] = {}
    for element in effective.elements:
        if element not in found:
            inherited.update(element.attributes)
    same = key_identity(MachineKey.from_attributes(inherited), scope.host, scope.name)
    return found if same != scope.state.identity else []  # restating the farm key is harmless


def application_override(model: AuditModel) -> Iterator[Finding]:
    """An application's web.config, or a <location> for it, changes the key it inherits."""
    seen: set[tuple[str, str, int]] = set()
    for node in model.reachable():
        for scope in node.scopes:
            for element in _overrides(scope):
                path = element.source
                if (node.host, path, element.line) in seen:
                    continue
                seen.add((node.host, path, element.line))
                where = (
                    f"<location path={element.location_path!r}>"
                    if element.scope
                    else "its web.config"
                )
                yield Finding(
                    "application-override",
                    Severity.HIGH,
                    f"{where} overrides the farm key ({', '.join(sorted(element.attributes))}); "
                    f"the application uses {scope.state.fingerprint or 'an AutoGenerate key'}",
                    "Remove the override so the application inherits the farm key, or manage "
                    "this file as a root config: its tickets are not valid elsewhere.",
                    node.host,
                    path,
                    element.line,
                    application_of(scope),
                )
        for config in node.files.values():  # locations that target no known application
            if config.facts is None or config.role is not FileRole.ROOT:
                continue
            for element in config.facts.keys:
                if element.scope and (node.host, config.path, element.line) not in seen:
                    seen.add((node.host, config.path, element.line))
                    yield Finding(
                        "application-override",
                        Severity.HIGH,
                        f"<location path={element.location_path!r}> sets its own machineKey",
                        "Remove the <location> machineKey so that path inherits the farm key.",
                        node.host,
                        config.path,
                        element.line,
                    )


def autogenerate_in_farm(model: AuditModel) -> Iterator[Finding]:
    """AutoGenerate/IsolateApps in effect anywhere in a farm of more than one node."""
    if len(model.nodes) < 2:
        return
    for node in model.reachable():
        roots = {s.path: s for s in node.root_scopes()}
        for scope in node.scopes:
            if not scope.state.autogenerate:
                continue
            inherited = roots.get(scope.root_config)
            if scope.kind is ScopeKind.APPLICATION and inherited and inherited.state.autogenerate:
                continue  # reported at the root it inherits from
            path, line = where_set(scope, "validationKey")
            isolate = " with IsolateApps" if scope.state.isolated else ""
            yield Finding(
                "autogenerate-in-farm",
                Severity.HIGH,
                f"AutoGenerate{isolate} is in effect: this node makes up its own key",
                "Run `farmsync rotate` (or `sync`) so every node gets one explicit key.",
                node.host,
                path,
                line,
                application_of(scope),
            )
