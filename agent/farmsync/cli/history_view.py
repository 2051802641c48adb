"""``farmsync history``: the vault's keys by fingerprint, with the runs that set them."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.cli.output import print_json
from farmsync.cli.printable import markup
from farmsync.cli.secret import vault_secret_source
from farmsync.inventory.loader import load_inventory
from farmsync.keys.vault import KeyVault
from farmsync.nodes.connect import node_for
from farmsync.orchestration import holdings
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.state import StateDir, default_state_root

WIDE_HISTORY = 112  # columns the one-line-per-key table needs


def _count(entry: dict[str, object], total: int) -> str:
    held = entry["on_nodes"]
    count = len(held) if isinstance(held, list) else 0
    return f"{count}/{total} nodes" if count else "no node"


IMPORTED_NOTE = (
    "origin imported: a key found on the farm before farmsync managed it, recorded by the "
    "first rotation so that `rollback` can return to it; its creation time is its import time"
)


def show_history(
    inventory_path: Path,
    state_dir: Path | None,
    key_file: Path | None,
    as_json: bool,
    out: Console,
    *,
    show_keys: bool = False,
    err: Console | None = None,
    live: bool = False,
) -> None:
    inventory = load_inventory(inventory_path)
    state = StateDir(state_dir or default_state_root(), inventory.farm)
    vault = KeyVault.open(state.vault, vault_secret_source(key_file)())
    names = list(inventory.hosts)
    journal = Journal(state.journal)
    if live:
        held = holdings.live(list(inventory.hosts.values()), node_for)
    else:
        held = holdings.from_journal(journal, names)
    journal.records()  # the lines it cannot use, reported below
    entries: list[dict[str, object]] = []
    for entry in vault.entries():
        summary: dict[str, object] = dict(entry.summary())
        summary["on_nodes"] = held.hosts.get(entry.fingerprint, [])
        summary["on_farm"] = held.describe(entry.fingerprint)
        if show_keys:
            # The one deliberate way to get key material out of the vault (disaster recovery).
            summary["validationKey"] = entry.key.validation_key
            summary["decryptionKey"] = entry.key.decryption_key
        entries.append(summary)
    if show_keys and err is not None:
        err.print("[yellow]warning: --show-keys prints key material; keep this output secret[/]")
    takeovers = vault.identity.takeovers
    if as_json:
        print_json(
            {
                "farm": inventory.farm,
                "vault_id": vault.identity.vault_id,
                "generation": vault.identity.generation,
                "takeovers": takeovers,
                "keys": entries,
                "holdings": {"as_of": held.as_of, "total": held.total, "unknown": held.unknown},
                "journal": {
                    "damaged_lines": [
                        {"line": d.line, "problem": d.problem, "run_id": d.run_id}
                        for d in journal.damage
                    ],
                    "torn_last_line": journal.torn_tail,
                },
            },
            out.file,
        )
        return
    for note in journal.damage_report():
        (err or out).print(f"[yellow]warning: {markup(note)}[/]", soft_wrap=True)
    wide = not out.is_terminal or out.width >= WIDE_HISTORY
    if wide:
        table = Table(title=f"key history of farm {markup(inventory.farm)}")
        columns = ("fingerprint", "status", "origin", "on the farm", "created", "stored by run")
        for column in columns:
            table.add_column(column, no_wrap=True)
        for e in entries:
            table.add_row(
                str(e["fingerprint"]),
                str(e["status"]),
                str(e["origin"]),
                _count(e, held.total),
                str(e["created_at"])[:19].replace("T", " "),
                str(e["run_id"]),
            )
        out.print(table)
    else:
        # A narrow terminal: two lines per key, nothing cut (fingerprints, run ids).
        out.print(f"key history of farm {markup(inventory.farm)}")
        for e in entries:
            out.print(
                f"{e['fingerprint']}  {e['status']:<9} {e['origin']:<9}  {_count(e, held.total)}"
            )
            created = str(e["created_at"])[:19].replace("T", " ")
            out.print(f"    created {created}, stored by run {e['run_id']}")
    source = "read from the nodes now" if live else "the journal's verified runs"
    out.print(f"on the farm: as of {held.as_of}")
    out.print(f"  ({source}{'' if live else '; --live reads the nodes'})")
    if held.unknown:
        out.print(f"key not known for: {markup(', '.join(held.unknown))}")
    if any(e["origin"] == "imported" for e in entries):
        out.print(IMPORTED_NOTE, soft_wrap=False)  # prose: wrap it at words
    for taken in takeovers:
        out.print(
            markup(
                f"took the farm over at {taken.get('at')} (run {taken.get('run_id')}) from vault "
                f"{taken.get('from_vault_id')} at {taken.get('from_vault')}, generation "
                f"{taken.get('from_generation')}"
            ),
            soft_wrap=False,
        )
    if show_keys:
        # Whole keys on lines of their own: a table would fold them.
        for e in entries:
            out.print(f"{e['fingerprint']} validationKey={e['validationKey']}", soft_wrap=True)
            out.print(f"{e['fingerprint']} decryptionKey={e['decryptionKey']}", soft_wrap=True)
