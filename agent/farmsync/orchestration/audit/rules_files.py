"""Audit rules about files on the nodes: what could not be read, what farmsync left behind,
machineKeys where ASP.NET does not take them, encrypted sections. One rule, one id."""

from __future__ import annotations

from collections.abc import Iterator

from farmsync.orchestration.audit.model import AuditModel, FileRole, Finding, Severity


def unreadable_config(model: AuditModel) -> Iterator[Finding]:
    """A config that could not be read or parsed is unknown, never clean."""
    for node in model.reachable():
        for config in node.files.values():
            if config.status not in ("unreadable", "malformed"):
                continue
            yield Finding(
                "unreadable-config",
                Severity.HIGH,
                f"{config.role.value} is {config.status}: {config.error}; its key is unknown",
                "Give the audit's account read access (or fix the file) and audit again.",
                node.host,
                config.path,
                config.error_line,
            )


def windows_facts_unavailable(model: AuditModel) -> Iterator[Finding]:
    """The registry value and RSA containers of a Windows node could not be read."""
    for node in model.reachable():
        if node.windows and node.facts_error:
            yield Finding(
                "windows-facts-unavailable",
                Severity.INFO,
                f"registry and RSA key containers not read: {node.facts_error}",
                "Run the audit with an account that may read HKLM and the machine key store.",
                node.host,
            )


def old_keys_in_backups(model: AuditModel) -> Iterator[Finding]:
    """farmsync backups keep old keys on the node, as readable as the live file."""
    for node in model.reachable():
        for config in node.files.values():
            backups = [n for n in config.leftovers if n.endswith(".bak")]
            if backups:
                yield Finding(
                    "old-keys-in-backups",
                    Severity.LOW,
                    f"{len(backups)} farmsync backup(s) beside this file hold earlier keys",
                    "Keep fewer with `--keep-backups`, or remove backups of retired keys.",
                    node.host,
                    config.path,
                )


def stale_staging_file(model: AuditModel) -> Iterator[Finding]:
    """A *.farmsync-*.new staging file outlived its run."""
    for node in model.reachable():
        for config in node.files.values():
            for name in config.leftovers:
                if name.endswith(".new"):
                    yield Finding(
                        "stale-staging-file",
                        Severity.LOW,
                        f"staging file {name} remains from an unfinished run",
                        "Run `farmsync recover`, which settles the run and removes it.",
                        node.host,
                        config.path,
                    )


def subfolder_machinekey(model: AuditModel) -> Iterator[Finding]:
    """A <machineKey> in a web.config below an application, where ASP.NET does not take it."""
    for node in model.reachable():
        for config in node.files.values():
            if config.role is not FileRole.SUBFOLDER or config.facts is None:
                continue
            for element in config.facts.keys:
                yield Finding(
                    "subfolder-machinekey",
                    Severity.LOW,
                    "a <machineKey> in a folder that is not an application has no effect "
                    "(ASP.NET reads it only at application level)",
                    "Remove it, or make the folder an application if it needs its own key.",
                    node.host,
                    config.path,
                    element.line,
                )


def encrypted_section(model: AuditModel) -> Iterator[Finding]:
    """An encrypted system.web: its key is unknown, not clean."""
    for node in model.reachable():
        for config in node.files.values():
            if config.facts is not None and config.facts.encrypted:
                yield Finding(
                    "encrypted-section",
                    Severity.INFO,
                    "system.web is encrypted with protected configuration: its key is unknown",
                    "Decrypt it (aspnet_regiis -pdf) to audit it, or check its key by hand.",
                    node.host,
                    config.path,
                    config.facts.encrypted_line,
                )
