"""Audit rules about the farm agreeing with itself beyond the key: attributes that break
tickets, the two bitnesses of a node, IIS's RSA key containers."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

from farmsync.keys.machinekey import DEFAULT_COMPATIBILITY_MODE, MachineKey
from farmsync.orchestration.audit.model import (
    AuditModel,
    Finding,
    KeyStatus,
    Scope,
    ScopeKind,
    Severity,
)
from farmsync.orchestration.audit.rules_support import ok_scopes, where_set

_TICKET_ATTRIBUTES: dict[str, Callable[[MachineKey], str]] = {
    "validation": lambda k: k.validation,
    "decryption": lambda k: k.decryption,
    "compatibilityMode": lambda k: k.compatibility_mode or DEFAULT_COMPATIBILITY_MODE,
    "applicationName": lambda k: k.application_name or "",
    "dataProtectorType": lambda k: k.data_protector_type or "",
}


def attribute_mismatch(model: AuditModel) -> Iterator[Finding]:
    """Attributes that break tickets even with equal keys differ across the farm's roots."""
    roots = [s for s in ok_scopes(model) if s.kind is ScopeKind.ROOT and s.state.key]
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
            path, line = where_set(scope, attribute)
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
