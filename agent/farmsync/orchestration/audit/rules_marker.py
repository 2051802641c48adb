"""Audit rules about the farm markers farmsync writes beside each key (orchestration/marker.py).

A farm whose root web.configs carry markers of more than one vault has been written by two
controllers; a file whose key is not the one its marker names was changed outside farmsync.
"""

from __future__ import annotations

from collections.abc import Iterator

from farmsync.orchestration.audit.model import AuditModel, FileRole, Finding, Severity


def marker_mismatch(model: AuditModel) -> Iterator[Finding]:
    roots = [
        (node.host, config)
        for node in model.reachable()
        for config in node.files.values()
        if config.role is FileRole.ROOT and config.marker is not None
    ]
    vaults = sorted({c.marker.vault_id for _, c in roots if c.marker is not None})
    if len(vaults) > 1:
        newest = max((c.marker for _, c in roots if c.marker), key=lambda m: m.generation)
        yield Finding(
            "marker-mismatch",
            Severity.MEDIUM,
            f"the farm's root web.configs carry markers of {len(vaults)} vaults "
            f"({', '.join(vaults)}); the newest, generation {newest.generation}, is vault "
            f"{newest.vault_id} at {newest.vault}",
            "Manage the farm from one vault: use that vault's --state-dir, or take the farm "
            "over with `farmsync rotate --adopt`.",
        )
    for host, config in roots:
        marker = config.marker
        if marker is not None and config.marker_key and config.marker_key != marker.fingerprint:
            yield Finding(
                "marker-mismatch",
                Severity.MEDIUM,
                f"holds {config.marker_key}, but farmsync's marker says run {marker.run_id} "
                f"wrote {marker.fingerprint}: the key was changed outside farmsync",
                "Run `farmsync sync` to put the farm's key back, or find who changed it.",
                host,
                config.path,
            )
