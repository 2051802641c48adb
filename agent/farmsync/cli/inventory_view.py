"""``farmsync inventory check``: validate, then show every host and the files it manages."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from farmsync.cli.render import print_json
from farmsync.inventory.describe import describe_inventory
from farmsync.inventory.loader import load_inventory


def show_inventory(path: Path, as_json: bool, out: Console, err: Console) -> None:
    inventory = load_inventory(path)
    summaries = describe_inventory(inventory)
    warnings = [
        f"{w.source}:{w.line}: warning: {w.message}"
        if w.line
        else f"{w.source}: warning: {w.message}"
        for w in inventory.warnings
    ]
    if as_json:
        print_json(
            {
                "inventory": str(path),
                "farm": inventory.farm,
                "hosts": [s.to_dict() for s in summaries],
                "warnings": warnings,
            },
            out,
        )
        return
    for warning in warnings:
        err.print(f"[yellow]{escape(warning)}[/]")
    for s in summaries:
        for note in s.notes:
            err.print(f"[yellow]{escape(s.name)}: warning: {escape(note)}[/]")
    table = Table(title=f"farm {escape(inventory.farm)}: {len(summaries)} host(s)")
    columns = ("host", "groups", "transport", "address", "password", "root web.config files")
    for column in (*columns, "identity checked by"):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            escape(s.name),
            escape(",".join(s.groups)),
            f"{s.transport}/{s.shell}",
            escape(s.address),
            escape(s.password_source),
            escape("\n".join(s.root_configs)),
            escape(s.trust),
        )
    out.print(table)
    out.print(f"[green]ok[/]: {escape(str(path))} is valid")
