"""Every audit rule, in the order findings of equal severity are listed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from farmsync.orchestration.audit import (
    rules_consistency,
    rules_files,
    rules_keys,
    rules_marker,
    rules_policy,
)
from farmsync.orchestration.audit.model import AuditModel, Finding

Rule = Callable[[AuditModel], Iterator[Finding]]

RULES: dict[str, Rule] = {
    "disclosed-key": rules_keys.disclosed_key,
    "viewstate-mac-disabled": rules_keys.viewstate_mac_disabled,
    "key-drift": rules_keys.key_drift,
    "application-override": rules_keys.application_override,
    "autogenerate-in-farm": rules_keys.autogenerate_in_farm,
    "attribute-mismatch": rules_consistency.attribute_mismatch,
    "bitness-mismatch": rules_consistency.bitness_mismatch,
    "rsa-container-mismatch": rules_consistency.rsa_container_mismatch,
    "marker-mismatch": rules_marker.marker_mismatch,
    "unreadable-config": rules_files.unreadable_config,
    "weak-algorithm": rules_policy.weak_algorithm,
    "key-too-old": rules_policy.key_too_old,
    "root-key-unlocked": rules_policy.root_key_unlocked,
    "old-keys-in-backups": rules_files.old_keys_in_backups,
    "stale-staging-file": rules_files.stale_staging_file,
    "subfolder-machinekey": rules_files.subfolder_machinekey,
    "encrypted-section": rules_files.encrypted_section,
    "windows-facts-unavailable": rules_files.windows_facts_unavailable,
}


def evaluate(model: AuditModel) -> list[Finding]:
    """Every finding, worst first (rule order, then host and place, within a severity)."""
    found: list[Finding] = []
    for rule_id, rule in RULES.items():
        for finding in rule(model):
            assert finding.id == rule_id, f"rule {rule_id} produced {finding.id}"
            found.append(finding)
    order = {rule_id: index for index, rule_id in enumerate(RULES)}
    return sorted(
        found,
        key=lambda f: (f.severity.rank, order[f.id], f.host or "", f.path or "", f.line or 0),
    )
