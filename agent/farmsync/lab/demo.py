"""``make demo``: a real 3-node farm on this machine, rotated by farmsync, with the proof.

1. start the lab: 3 nodes (sshd + Mono ASP.NET), each on its own key, as a fresh farm;
2. ``farmsync rotate --check`` reads every node and shows what would change;
3. a forms ticket and a ViewState issued by node1 are rejected by node2 and node3;
4. ``farmsync rotate`` puts one new key on every node (two-phase, then recycles them);
5. one fingerprint everywhere, and node1's ticket and ViewState accepted by every node;
6. the lab is stopped, whatever happened.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.lab.farm import Lab, LabStatus
from farmsync.lab.proof import Acceptance, cross_check

NODES = 3
ISSUER = "node1"


def _farmsync(args: list[str], env: dict[str, str], console: Console) -> int:
    console.print(f"[bold cyan]$ farmsync {' '.join(args)}[/]")
    completed = subprocess.run(
        [sys.executable, "-m", "farmsync.cli.main", *args], env=env, check=False
    )
    return completed.returncode


def _keys(status: LabStatus) -> Table:
    table = Table("node", "root web.config key (fingerprint)")
    for node in status.nodes:
        table.add_row(node.name, node.key_fingerprint or "?")
    return table


def _acceptance(result: Acceptance) -> Table:
    table = Table(f"issued by {ISSUER}, checked on", "forms ticket", "ViewState postback")
    for checker, ticket_ok in result.tickets[ISSUER].items():
        view_ok = result.viewstate[ISSUER][checker]
        table.add_row(checker, _mark(ticket_ok), _mark(view_ok))
    return table


def _mark(ok: bool) -> str:
    return "[green]accepted[/]" if ok else "[red]rejected[/]"


def run(console: Console, root: Path) -> list[tuple[str, bool]]:
    lab_dir = root / ".lab"
    inventory = root / "inventory" / "lab.yml"
    state_dir = lab_dir / "state"
    lab = Lab(lab_dir, inventory_path=inventory)
    if lab.status().any_alive:  # left over from an interrupted demo
        lab.down()
    shutil.rmtree(state_dir, ignore_errors=True)
    env = {
        **os.environ,
        "FARMSYNC_STATE_DIR": str(state_dir),
        # A throwaway vault for a throwaway farm.
        "FARMSYNC_VAULT_PASSPHRASE": secrets.token_urlsafe(24),
    }
    checks: list[tuple[str, bool]] = []
    try:
        console.rule(f"1. a fresh farm: {NODES} real nodes (sshd + Mono ASP.NET)")
        before = lab.up(NODES)
        console.print(_keys(before))
        keys_before = {n.key_fingerprint for n in before.nodes}
        checks.append((f"{NODES} nodes start on {NODES} different keys", len(keys_before) == NODES))
        urls = {n.name: n.http_url for n in before.nodes}

        console.rule("2. what a rotation would change (read only)")
        checks.append(
            (
                "rotate --check exits 0",
                _farmsync(["rotate", "--check", "-i", str(inventory)], env, console) == 0,
            )
        )

        console.rule(f"3. credentials from {ISSUER} on a farm with mixed keys")
        mixed = cross_check(urls, [ISSUER])
        console.print(_acceptance(mixed))
        checks.append(
            (f"{ISSUER}'s ticket and ViewState rejected by the other nodes", mixed.only_at_home())
        )

        console.rule("4. farmsync rotate")
        checks.append(
            ("rotate exits 0", _farmsync(["rotate", "-i", str(inventory)], env, console) == 0)
        )

        console.rule("5. after the rotation")
        after = lab.status()
        console.print(_keys(after))
        keys_after = {n.key_fingerprint for n in after.nodes}
        checks.append(
            (
                "every node holds the same new key",
                len(keys_after) == 1 and not keys_after & keys_before,
            )
        )
        shared = cross_check(urls, [ISSUER])
        console.print(_acceptance(shared))
        checks.append(
            (f"{ISSUER}'s ticket and ViewState accepted by every node", shared.everywhere())
        )
    finally:
        console.rule("6. stopping the lab")
        stopped = lab.down()
        console.print(f"stopped {len(stopped)} process(es)")
        checks.append(("no lab process left running", not lab.status().any_alive))
    return checks


def main() -> int:
    console = Console(highlight=False)
    started = time.monotonic()
    checks = run(console, Path.cwd())
    console.rule("summary")
    summary = Table("check", "result")
    for label, ok in checks:
        summary.add_row(label, "[green]ok[/]" if ok else "[red]FAILED[/]")
    console.print(summary)
    console.print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
