"""``startup``: how long the controller takes before it does any work.

Two numbers, each the median of several fresh interpreters:
- the wall time of ``farmsync --help`` (what every command pays before its own work);
- the import time of a rotation of SSH hosts, up to its first node contact and its result:
  ``rotate --check --json`` against one SSH host on a loopback port nothing listens on, run
  under ``python -X importtime``, summing the top-level imports (the ones the run triggers
  itself, each with everything below it).

Which modules load is checked by ``tests/cli/test_startup.py``; this measures what they cost.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.orchestration.farmkit import PASSPHRASE, write_inventory

from bench.report import ScenarioResult

RUNS = 7
# Measured on the 2-core bench machine (load ~1): `farmsync --help` 80-92 ms (234 ms before
# the lazy imports), `python -c pass` ~12 ms. 150 ms leaves room for a busy machine and
# fails when --help loads the rollout, the vault's cipher or rich's tables again.
HELP_WALL_MS = 150.0
# The rotation's imports, measured 250-275 ms (300 ms before; paramiko alone is ~55 ms, and
# it imports invoke, ~25 ms). 400 ms catches the audit, the WinRM stack or lxml creeping in.
ROTATE_IMPORT_MS = 400.0


def _median_wall_ms(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def top_level_import_ms(stderr: str) -> float:
    """The sum of the top-level lines of ``-X importtime`` (each includes what it imported)."""
    total_us = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):
            total_us += int(cumulative)
    return total_us / 1000


def _ssh_farm(root: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # released: connecting is refused
    key = root / "id"
    key.write_text("never read: the connection is refused first\n")
    key.chmod(0o600)
    (root / "known_hosts").write_text("")
    inventory = root / "farm.yml"
    host = {
        "_group": "web",
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_user": "farmsync",
        "ansible_ssh_private_key_file": str(key),
        "farmsync_known_hosts": str(root / "known_hosts"),
        "farmsync_root_configs": ["/srv/www/web.config"],
    }
    write_inventory(inventory, "benchstartup", {"web1": host})
    return inventory


def run_startup() -> ScenarioResult:
    out = ScenarioResult("startup", f"farmsync --help and a rotation's imports, median of {RUNS}")
    cli = [sys.executable, "-m", "farmsync.cli.main"]
    with tempfile.TemporaryDirectory(prefix="farmsync-bench-startup-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "FARMSYNC_STATE_DIR": str(root / "state"),
            "FARMSYNC_VAULT_PASSPHRASE": PASSPHRASE,
        }
        out.add("python -c pass", _median_wall_ms([sys.executable, "-c", "pass"], env), "ms")
        out.add("farmsync --help", _median_wall_ms([*cli, "--help"], env), "ms", "<=", HELP_WALL_MS)
        rotate = [*cli, "rotate", "--check", "--json", "-i", str(_ssh_farm(root))]
        imports = []
        for _ in range(RUNS):
            done = subprocess.run(
                [sys.executable, "-X", "importtime", *rotate[1:]],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 3:  # the refused node: could not run
                out.error = f"rotate exited {done.returncode}: {done.stderr.strip()[-200:]}"
                return out
            imports.append(top_level_import_ms(done.stderr))
        out.add(
            "rotate imports (SSH host)",
            statistics.median(imports),
            "ms",
            "<=",
            ROTATE_IMPORT_MS,
        )
    return out
