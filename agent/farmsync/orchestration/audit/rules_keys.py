"""Audit rules about keys: each a small pure function over the model, with one stable id.

Key values are read here (to check them against the disclosed list, to measure them) and
never put into a finding: findings name fingerprints, files and lines."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta

from farmsync.algorithms import FRAMEWORK_V2, VALIDATION_ALGORITHMS, canonical_validation
from farmsync.inventory.durations import format_duration
from farmsync.keys.machinekey import DEFAULT_COMPATIBILITY_MODE, MachineKey, is_auto_generate
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
from farmsync.webconfig.effective import KeyElement

CIS_V2 = "CIS IIS 10 3.8"
CIS_V4 = "CIS IIS 10 3.9"
STIG = "DISA STIG V-218807"


def _ok_scopes(model: AuditModel) -> list[Scope]:
    return [s for s in model.scopes() if s.state.status is KeyStatus.OK]


def _where(scope: Scope, attribute: str) -> tuple[str, int | None]:
    """The file and line an effective attribute came from (the scope's file if defaulted)."""
    effective = scope.state.effective
    source = effective.source_of(attribute) if effective is not None else None
    if source is None:
        return scope.path, None
    return source.path, source.line


def _application(scope: Scope) -> str | None:
    return scope.name if scope.kind is ScopeKind.APPLICATION else None


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
            path, line = _where(scope, "validationKey")
            yield Finding(
                "key-drift",
                Severity.HIGH,
                f"holds {shown}, not the expected {expected} ({basis})",
                "Run `farmsync sync` to put the farm's key back on this node.",
                node.host,
                path,  # where the key in effect is set (for an application: what it inherits)
                line,
                _application(scope),
            )


def _drift_without_expected(model: AuditModel) -> Iterator[Finding]:
    """No journal and no majority: several keys with none ahead is drift everywhere."""
    roots = [s for s in _ok_scopes(model) if s.kind is ScopeKind.ROOT]
    identities = sorted({s.state.identity for s in roots if s.state.identity})
    if len(identities) < 2:
        return
    for scope in roots:
        path, line = _where(scope, "validationKey")
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
                    _application(scope),
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
            path, line = _where(scope, "validationKey")
            isolate = " with IsolateApps" if scope.state.isolated else ""
            yield Finding(
                "autogenerate-in-farm",
                Severity.HIGH,
                f"AutoGenerate{isolate} is in effect: this node makes up its own key",
                "Run `farmsync rotate` (or `sync`) so every node gets one explicit key.",
                node.host,
                path,
                line,
                _application(scope),
            )


_TICKET_ATTRIBUTES: dict[str, Callable[[MachineKey], str]] = {
    "validation": lambda k: k.validation,
    "decryption": lambda k: k.decryption,
    "compatibilityMode": lambda k: k.compatibility_mode or DEFAULT_COMPATIBILITY_MODE,
    "applicationName": lambda k: k.application_name or "",
    "dataProtectorType": lambda k: k.data_protector_type or "",
}


def attribute_mismatch(model: AuditModel) -> Iterator[Finding]:
    """Attributes that break tickets even with equal keys differ across the farm's roots."""
    roots = [s for s in _ok_scopes(model) if s.kind is ScopeKind.ROOT and s.state.key]
    for attribute, get in _TICKET_ATTRIBUTES.items():
        values = {id(s): get(s.state.key) for s in roots if s.state.key is not None}
        counts = Counter(values.values())
        if len(counts) < 2:
            continue
        majority = counts.most_common(1)[0][0]
        for scope in roots:
            value = values[id(scope)]
            if value == majority:
                continue
            path, line = _where(scope, attribute)
            yield Finding(
                "attribute-mismatch",
                Severity.HIGH,
                f"{attribute}={value or '(unset)'} while most of the farm has "
                f"{attribute}={majority or '(unset)'}",
                f"Make {attribute} the same on every node (`farmsync sync` writes the policy's).",
                scope.host,
                path,
                line,
            )


def bitness_mismatch(model: AuditModel) -> Iterator[Finding]:
    """Framework and Framework64 root configs of one version differ on a node."""
    for node in model.reachable():
        pairs: dict[str, dict[int, Scope]] = defaultdict(dict)
        for scope in node.root_scopes():
            if scope.state.status is KeyStatus.OK and scope.framework and scope.bitness:
                pairs[scope.framework][scope.bitness] = scope
        for framework, by_bits in sorted(pairs.items()):
            if len(by_bits) == 2 and by_bits[32].state.identity != by_bits[64].state.identity:
                yield Finding(
                    "bitness-mismatch",
                    Severity.HIGH,
                    f"Framework ({by_bits[32].state.fingerprint or 'AutoGenerate'}) and "
                    f"Framework64 ({by_bits[64].state.fingerprint or 'AutoGenerate'}) root "
                    f"configs of {framework} differ: 32-bit and 64-bit pools use different keys",
                    "Run `farmsync sync` so both bitnesses hold the farm key.",
                    node.host,
                    by_bits[32].path,
                )


def rsa_container_mismatch(model: AuditModel) -> Iterator[Finding]:
    """IIS's RSA key containers differ across the Windows nodes."""
    holders = [n for n in model.reachable() if n.rsa is not None]
    names = sorted({name for n in holders for name in (n.rsa or {})})
    for name in names:
        seen = {n.host: (n.rsa or {}).get(name) for n in holders}
        values = {h: (c.fingerprint if c is not None else None) for h, c in seen.items()}
        counts = Counter(values.values())
        if len(counts) < 2:
            continue
        majority = counts.most_common(1)[0][0]
        in_use = {n.host for n in holders if n.iis is not None and n.iis.rsa_in_use()}
        for host, value in values.items():
            if value == majority:
                continue
            using = (
                "; this node's applicationHost.config uses RSA providers" if host in in_use else ""
            )
            yield Finding(
                "rsa-container-mismatch",
                Severity.HIGH,
                f"RSA key container {name} is {value or 'missing'}, most nodes have "
                f"{majority or 'none'}{using}",
                f"Export {name} from a reference node and import it here "
                "(aspnet_regiis -px / -pi) so shared or encrypted configuration decrypts.",
                host,
                name,
            )


def _weak_reasons(key: MachineKey, framework: str | None) -> list[tuple[str, str, tuple[str, ...]]]:
    v2 = framework == FRAMEWORK_V2
    controls = (CIS_V2,) if v2 else (CIS_V4, STIG)
    reasons: list[tuple[str, str, tuple[str, ...]]] = []
    validation = canonical_validation(key.validation) or key.validation
    if validation == "MD5" or (validation in ("SHA1", "3DES", "AES") and not v2):
        reasons.append(("validation", f"validation={validation} is weak or legacy", controls))
    if key.decryption in ("DES", "3DES"):
        reasons.append(("decryption", f"decryption={key.decryption} is weak", controls))
    algorithm = VALIDATION_ALGORITHMS.get(validation)
    if not is_auto_generate(key.validation_key) and algorithm is not None:
        size = len(key.validation_key.strip()) // 2
        if size < 32:
            reasons.append(("validationKey", f"validationKey has only {size} bytes", controls))
    if not is_auto_generate(key.decryption_key) and key.decryption in ("AES", "Auto"):
        size = len(key.decryption_key.strip()) // 2
        if size < 16:
            reasons.append(("decryptionKey", f"decryptionKey has only {size} bytes", controls))
    if not v2 and key.compatibility_mode in ("Framework20SP1", "Framework20SP2"):
        reasons.append(
            (
                "compatibilityMode",
                f"compatibilityMode={key.compatibility_mode} is legacy",
                (CIS_V4,),
            )
        )
    return reasons


def weak_algorithm(model: AuditModel) -> Iterator[Finding]:
    """Weak or legacy algorithms, short keys, legacy compatibilityMode (reported where set)."""
    seen: set[tuple[str, str, int | None, str]] = set()
    for scope in _ok_scopes(model):
        key = scope.state.key
        if key is None:
            continue
        for attribute, text, controls in _weak_reasons(key, scope.framework):
            path, line = _where(scope, attribute)
            if (scope.host, path, line, attribute) in seen:
                continue
            seen.add((scope.host, path, line, attribute))
            yield Finding(
                "weak-algorithm",
                Severity.MEDIUM,
                text,
                "Rotate to HMACSHA256 (or stronger) validation with AES decryption "
                "(`farmsync rotate` with the policy's defaults).",
                scope.host,
                path,
                line,
                _application(scope),
                controls,
            )


def key_too_old(model: AuditModel) -> Iterator[Finding]:
    """The farm key is older than the policy's max_key_age (from the journal's run times)."""
    since, max_days = model.expected.since, model.max_key_age_days
    if since is None or max_days is None:
        return
    age, limit = model.now - since, timedelta(days=max_days)
    if age > limit:
        yield Finding(
            "key-too-old",
            Severity.MEDIUM,
            f"the farm key {model.expected.identity} is {format_duration(age)} old, "
            f"older than the policy's max_key_age of {format_duration(limit)}",
            "Run `farmsync rotate` (or schedule `farmsync rotate --if-due`).",
        )


def root_key_unlocked(model: AuditModel) -> Iterator[Finding]:
    """The root key is not locked, so any application may override it."""
    for node in model.reachable():
        for scope in node.root_scopes():
            config = node.files.get(scope.path)
            own = config.facts.root_key() if config is not None and config.facts else None
            if own is None or own.locked or not own.sets_keys:
                continue
            yield Finding(
                "root-key-unlocked",
                Severity.MEDIUM,
                'the root machineKey is not locked (no allowOverride="false" or lockAttributes)',
                'Wrap it in <location allowOverride="false"> or add lockAttributes so '
                "applications cannot override the farm key.",
                node.host,
                scope.path,
                own.line,
            )
