"""Audit rules about policy: weak algorithms (mapped to CIS IIS 10 and DISA STIG controls),
key age, and whether the root key is locked against overrides.

Key lengths are measured here; no key value is ever put into a finding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from farmsync.algorithms import FRAMEWORK_V2, VALIDATION_ALGORITHMS, canonical_validation
from farmsync.inventory.durations import format_duration
from farmsync.keys.machinekey import MachineKey, is_auto_generate
from farmsync.orchestration.audit.model import AuditModel, Finding, Severity
from farmsync.orchestration.audit.rules_support import application_of, ok_scopes, where_set

CIS_V2 = "CIS IIS 10 3.8"
CIS_V4 = "CIS IIS 10 3.9"
STIG = "DISA STIG V-218807"


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
    for scope in ok_scopes(model):
        key = scope.state.key
        if key is None:
            continue
        for attribute, text, controls in _weak_reasons(key, scope.framework):
            path, line = where_set(scope, attribute)
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
                application_of(scope),
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
