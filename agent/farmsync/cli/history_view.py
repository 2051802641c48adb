"""``farmsync history``: the vault's keys by fingerprint, with the runs that set them."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.cli.printable import markup
from farmsync.cli.render import print_json
from farmsync.inventory.loader import load_inventory
from farmsync.keys.vault import KeyVault, VaultSecret
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.state import StateDir, default_state_root


def show_history(
    inventory_path: Path,
    state_dir: Path | None,
    key_file: Path | None,
    as_json: bool,
    out: Console,
    *,
    show_keys: bool = False,
    err: Console | None = None,
) -> None:
    inventory = load_inventory(inventory_path)
    state = StateDir(state_dir or default_state_root(), inventory.farm)
    secret = VaultSecret.from_env(os.environ, str(key_file) if key_file else None)
    vault = KeyVault.open(state.vault, secret)
    journal = Journal(state.journal)
    journal.records()  # only to find the lines it cannot use
    entries: list[dict[str, str | None]] = []
    for entry in vault.entries():
        summary = entry.summary()
        if show_keys:
            # The one deliberate way to get key material out of the vault (disaster recovery).
            summary["validationKey"] = entry.key.validation_key
            summary["decryptionKey"] = entry.key.decryption_key
        entries.append(summary)
    if show_keys and err is not None:
        err.print("[yellow]warning: --show-keys prints key material; keep this output secret[/]")
    if as_json:
        damage = {
            "damaged_lines": [
                {"line": d.line, "problem": d.problem, "run_id": d.run_id} for d in journal.damage
            ],
            "torn_last_line": journal.torn_tail,
        }
        print_json({"farm": inventory.farm, "keys": entries, "journal": damage}, out)
        return
    for note in journal.damage_report():
        (err or out).print(f"[yellow]warning: {markup(note)}[/]", soft_wrap=True)
    table = Table(title=f"key history of farm {inventory.farm}")
    for column in (
        "fingerprint",
        "status",
        "created",
        "stored by run",
        "activated by run",
        "algorithms",
    ):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e["fingerprint"],
            e["status"],
            e["created_at"],
            e["run_id"],
            e["activated_run"] or "",
            f"{e['validation']}/{e['decryption']}",
        )
    out.print(table)
    if show_keys:
        # Whole keys on lines of their own: a table would fold them.
        for e in entries:
            out.print(f"{e['fingerprint']} validationKey={e['validationKey']}", soft_wrap=True)
            out.print(f"{e['fingerprint']} decryptionKey={e['decryptionKey']}", soft_wrap=True)
