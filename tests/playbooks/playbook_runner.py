"""Run the project's playbooks with the venv's ``ansible-playbook``, sealed off from the host.

Every ``ANSIBLE_*`` setting of the calling environment is dropped; configuration, home,
temporary directories, collections path and log go to a directory of the test's own, and the
working directory is that directory (so no ``ansible.cfg`` of the checkout or the user is
read). Nothing is fetched: the collections are the ones the ``ansible`` package installed.

``key_material`` is the scan every run's output goes through: long hex runs (a 64-hex AES
decryption key, a 128-hex HMACSHA256 validation key) and the exact secrets a test names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
VENV_BIN = Path(sys.executable).parent
FARMSYNC = VENV_BIN / "farmsync"
PLAYBOOK_NAMES = (
    "prepare-windows-nodes.yml",
    "install-controller.yml",
    "rotate.yml",
    "rotate-rolling.yml",
    "audit-nightly.yml",
    "emergency-rotate.yml",
)
HEX_RUN = re.compile(r"[0-9A-Fa-f]{64,}")


@dataclass(frozen=True)
class PlaybookRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Ansible:
    """``ansible-playbook`` and ``ansible-lint`` from the venv, configured under ``home``."""

    def __init__(self, home: Path, env: Mapping[str, str] | None = None):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        config = home / "ansible.cfg"
        config.write_text("[defaults]\n")
        base = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.env = {
            **base,
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_HOME": str(home / "home"),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp-local"),
            "ANSIBLE_REMOTE_TEMP": str(home / "tmp-remote"),
            "ANSIBLE_COLLECTIONS_PATH": str(home / "collections"),
            "ANSIBLE_LOG_PATH": str(home / "ansible.log"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            **(env or {}),
        }

    def playbook(
        self,
        name: str,
        inventory: Path | None,
        extra_vars: Mapping[str, Any] | None = None,
        *options: str,
        timeout: float = 600,
    ) -> PlaybookRun:
        argv = [str(VENV_BIN / "ansible-playbook"), "-v", *options]
        if inventory is not None:
            argv += ["-i", str(inventory)]
        argv.append(str(PLAYBOOKS / name))
        if extra_vars:
            argv += ["-e", json.dumps(dict(extra_vars))]
        done = subprocess.run(
            argv,
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return PlaybookRun(argv, done.returncode, done.stdout, done.stderr)

    def lint(self, *paths: Path, cwd: Path = PLAYBOOKS) -> subprocess.CompletedProcess[str]:
        argv = [
            str(VENV_BIN / "ansible-lint"),
            "--offline",
            "--profile",
            "production",
            "--nocolor",
            *map(str, paths),
        ]
        # Offline: no requirements installed, no version or schema fetched; caches in home.
        env = {
            **self.env,
            "ANSIBLE_LINT_NODEPS": "1",
            "ANSIBLE_LINT_SKIP_SCHEMA_UPDATE": "1",
            "XDG_CACHE_HOME": str(self.home / "cache"),
        }
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def log(self) -> str:
        path = self.home / "ansible.log"
        return path.read_text() if path.exists() else ""


def key_material(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """What in ``text`` looks like or is key material; each named by a short prefix only."""
    found = [
        f"hex run {m.group(0)[:8]}… ({len(m.group(0))} digits)" for m in HEX_RUN.finditer(text)
    ]
    lowered = text.lower()
    found += [f"secret {s[:4]}…" for s in secrets if s and s.lower() in lowered]
    return found


def task_results(output: str, task: str) -> list[str]:
    """How each host came out of the task named ``task`` ("ok", "changed", "skipping", ...)."""
    found: list[str] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and task in line:
            for after in lines[i + 1 :]:
                if after.startswith(("TASK [", "PLAY ")):
                    break
                word = after.split(":", 1)[0]
                if word in ("ok", "changed", "skipping", "fatal", "failed"):
                    found.append(word)
    return found
