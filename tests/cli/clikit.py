"""Running ``farmsync`` as a user does: a subprocess against a farm of real local files.

The farm's hosts use ``ansible_connection: local``, so every node operation is the node agent's
own code on real files under the test's directory. Tests read those files directly to see
what the command did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmsync.keys.vault import KeyVault, VaultSecret
from tests.orchestration.farmkit import file_key, node_config, write_inventory

PASSPHRASE = "cli tests passphrase"
FARM = "clifarm"
CLI = (sys.executable, "-m", "farmsync.cli.main")
ANSI = re.compile(r"\x1b[\[\]()][0-9;?]*[A-Za-z]?")

# Variables that would change how farmsync or rich behave under the test runner.
_SCRUBBED = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FARMSYNC_") and k not in _SCRUBBED
    }
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams, for failure messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def snapshot(root: Path, skip: Path | None = None) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``root``, except under ``skip``."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = str(path.relative_to(root))
        found[rel] = None if path.is_dir() and not path.is_symlink() else _bytes(path)
    return found


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # a symlink loop: its name is what counts
        return None


@dataclass
class LocalFarm:
    """Hosts in groups, each with one root web.config under ``root/nodes/<host>/``."""

    root: Path
    inventory: Path
    groups: dict[str, list[str]]
    configs: dict[str, Path]
    originals: dict[str, bytes] = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return list(self.configs)

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    @property
    def state_root(self) -> Path:
        return self.root / "state"

    @property
    def farm_dir(self) -> Path:
        return self.state_root / FARM

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(
            {
                "FARMSYNC_STATE_DIR": str(self.state_root),
                "FARMSYNC_VAULT_PASSPHRASE": PASSPHRASE,
                **extra,
            }
        )

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "-i", str(self.inventory), env=env or self.env(), timeout=timeout)

    def remember(self) -> None:
        """Take the files as they are now as the baseline ``unchanged`` compares with."""
        self.originals = {h: p.read_bytes() for h, p in self.configs.items() if p.is_file()}

    def contents(self) -> dict[str, bytes]:
        return {h: p.read_bytes() for h, p in self.configs.items()}

    def fingerprints(self) -> dict[str, str]:
        return {h: file_key(p).fingerprint() for h, p in self.configs.items()}

    def node_files(self) -> dict[str, bytes | None]:
        """Every file next to every config: staging files and backups included."""
        return snapshot(self.nodes_dir)

    def backups(self, host: str) -> list[Path]:
        return sorted(self.configs[host].parent.glob("web.config.farmsync-*.bak"))

    def vault(self) -> KeyVault:
        return KeyVault.open(self.farm_dir / "vault.fsv", VaultSecret.from_passphrase(PASSPHRASE))


def make_local_farm(
    root: Path,
    groups: Mapping[str, list[str]] | None = None,
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> LocalFarm:
    """A farm of ``ansible_connection: local`` hosts, each starting on its own key."""
    groups = dict(groups or {"east": ["web1", "web2"], "west": ["web3"]})
    hosts: dict[str, dict[str, Any]] = {}
    configs: dict[str, Path] = {}
    for group, names in groups.items():
        for name in names:
            config = root / "nodes" / name / "web.config"
            config.parent.mkdir(parents=True)
            config.write_bytes(node_config(name))
            configs[name] = config
            hosts[name] = {
                "_group": group,
                "ansible_connection": "local",
                "farmsync_root_configs": [str(config)],
                **(host_vars or {}).get(name, {}),
            }
    inventory = root / "farm.yml"
    write_inventory(inventory, FARM, hosts)
    farm = LocalFarm(root, inventory, groups, configs)
    farm.remember()
    return farm
