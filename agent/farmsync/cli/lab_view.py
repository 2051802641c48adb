"""``farmsync lab up|down|status``: the local lab farm, rendered."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.cli.output import print_json
from farmsync.cli.printable import markup
from farmsync.fsutil import atomic_write_private
from farmsync.lab.farm import STATE_FILE, Lab, LabStatus
from farmsync.orchestration.state import default_state_root


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


# Where `lab up` records the lab it started, so that `lab status` and `lab down` find it from
# any directory. A dot name: farm names (directories beside it) cannot start with one.
POINTER = ".lab-dir"
DEFAULT_DIR = Path(".lab")


def _pointer() -> Path:
    return default_state_root() / POINTER


def find_lab_dir(lab_dir: Path | None) -> Path:
    """--dir if given; else the lab `lab up` last started (recorded); else ./.lab."""
    if lab_dir is not None:
        return lab_dir
    try:
        recorded = Path(_pointer().read_text().strip())
    except OSError:
        return DEFAULT_DIR
    if (recorded / STATE_FILE).exists() and not (DEFAULT_DIR / STATE_FILE).exists():
        return recorded
    return DEFAULT_DIR


def _record(lab_dir: Path) -> None:
    root = default_state_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_private(root / POINTER, (str(lab_dir.absolute()) + "\n").encode())


def lab_up(nodes: int, inventory_out: Path, lab_dir: Path | None, out: Console) -> None:
    where = lab_dir or DEFAULT_DIR
    status = Lab(where, inventory_path=inventory_out).up(nodes)
    _record(where)
    out.print(_table(status))
    out.print(f"inventory written to {markup(str(status.inventory_path))}")


def lab_down(lab_dir: Path | None, out: Console) -> None:
    where = find_lab_dir(lab_dir)
    stopped = Lab(where).down()
    out.print(f"stopped {len(stopped)} process(es) of the lab in {markup(str(where.absolute()))}")


def lab_status(lab_dir: Path | None, as_json: bool, out: Console) -> None:
    status = Lab(find_lab_dir(lab_dir)).status()
    if as_json:
        print_json(status.to_dict(), out.file)
    else:
        out.print(_table(status))
