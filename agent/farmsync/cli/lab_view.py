"""``farmsync lab up|down|status``: the local lab farm, rendered."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.cli.printable import markup
from farmsync.cli.render import print_json
from farmsync.lab.farm import Lab, LabStatus


def _table(status: LabStatus) -> Table:
    table = Table(title=f"lab in {markup(status.state_dir)}")
    for column in ("node", "up", "http", "ssh", "key"):
        table.add_column(column)
    for node in status.nodes:
        table.add_row(
            node.name,
            "[green]yes[/]" if node.up else "[red]no[/]",
            markup(node.http_url),
            f"{node.ssh_address}:{node.ssh_port}",
            node.key_fingerprint or "",
        )
    return table


def lab_up(nodes: int, inventory_out: Path, lab_dir: Path, out: Console) -> None:
    status = Lab(lab_dir, inventory_path=inventory_out).up(nodes)
    out.print(_table(status))
    out.print(f"inventory written to {markup(str(status.inventory_path))}")


def lab_down(lab_dir: Path, out: Console) -> None:
    stopped = Lab(lab_dir).down()
    out.print(f"stopped {len(stopped)} process(es)")


def lab_status(lab_dir: Path, as_json: bool, out: Console) -> None:
    status = Lab(lab_dir).status()
    if as_json:
        print_json(status.to_dict(), out)
    else:
        out.print(_table(status))
