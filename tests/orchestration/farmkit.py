"""A test farm of real nodes: sshd (POSIX and Windows-shell) and WinRM endpoints.

Every node's root web.config is a real file on this machine, reached only through the node's
transport; the test reads the files directly to check what the transports did. The farm is
described by a real inventory file, so the loader and the CLI are exercised too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from farmsync import Farm, RolloutOptions, VaultSecret
from farmsync.keys.machinekey import MachineKey
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import ArmedCommit, NodeOperations
from farmsync.orchestration.context import FarmContext
from farmsync.orchestration.session import NodeFactory
from farmsync.webconfig.parser import inspect_config

PASSPHRASE = "correct horse battery staple"

# Each node starts on its own explicit key, as a farm before farmsync would.
ROOT_CONFIG = """<?xml version="1.0" encoding="utf-8"?>\r
<!-- root web.config of {name} -->\r
<configuration>\r
  <system.web>\r
    <compilation debug="false" />\r
    <machineKey validationKey="{vkey}" decryptionKey="{dkey}"\r
                validation="HMACSHA256" decryption="AES" />\r
  </system.web>\r
</configuration>\r
"""


def node_config(name: str) -> bytes:
    return ROOT_CONFIG.format(
        name=name, vkey=secrets.token_hex(64).upper(), dkey=secrets.token_hex(32).upper()
    ).encode()


def file_key(path: Path) -> MachineKey:
    found = inspect_config(path.read_bytes(), str(path)).root_key
    return found.key if found is not None else MachineKey.from_attributes({})


@dataclass
class TestFarm:
    __test__ = False

    root: Path
    inventory_path: Path
    configs: dict[str, Path]  # host -> its root web.config
    originals: dict[str, bytes]
    env: dict[str, str]
    handles: dict[str, Any] = field(default_factory=dict)  # host -> SshdNode / WsmanEndpoint

    @property
    def hosts(self) -> list[str]:
        return list(self.configs)

    def fingerprints(self) -> dict[str, str]:
        return {h: file_key(p).fingerprint() for h, p in self.configs.items()}

    def files_unchanged(self) -> bool:
        return all(p.read_bytes() == self.originals[h] for h, p in self.configs.items())

    def leftovers(self) -> list[Path]:
        """Staging files left next to any config."""
        return [p for c in self.configs.values() for p in c.parent.glob("*.farmsync-*.new")]

    def backups(self, host: str) -> list[Path]:
        return sorted(self.configs[host].parent.glob("web.config.farmsync-*.bak"))

    def open(
        self,
        options: RolloutOptions | None = None,
        *,
        limit: str | None = None,
        factory: NodeFactory = node_for,
    ) -> Farm:
        """The farm through the library's front door; ``factory`` swaps in hooked nodes."""
        farm = Farm.open(
            self.inventory_path,
            limit=limit,
            secret=VaultSecret.from_passphrase(PASSPHRASE),
            options=options or RolloutOptions(forks=8, timeout=20),
            environ=self.env,
        )
        if factory is not node_for:
            farm = Farm(replace(farm.ctx, factory=factory))
        return farm

    def context(
        self,
        options: RolloutOptions | None = None,
        *,
        limit: str | None = None,
        factory: NodeFactory = node_for,
    ) -> FarmContext:
        return self.open(options, limit=limit, factory=factory).ctx

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "farmsync.cli.main", *args, "-i", str(self.inventory_path)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "farmsync.cli.main", *args, "-i", str(self.inventory_path)],
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


SLOW_MV = """#!/bin/sh
# An mv that takes its time: the commit it serves lands after the controller gave up.
sleep {delay}
/bin/mv "$@"
status=$?
echo "$status" > {marker}.tmp && /bin/mv {marker}.tmp {marker}
exit $status
"""


def slow_mv(directory: Path, delay: float) -> tuple[Path, Path]:
    """A bin directory holding an ``mv`` that sleeps ``delay`` s first (put it first on a
    node's PATH), and the file it writes its exit status to once it ran."""
    bin_dir = directory / "slow-bin"
    bin_dir.mkdir()
    marker = directory / "late-mv-status"
    mv = bin_dir / "mv"
    mv.write_text(SLOW_MV.format(delay=delay, marker=marker))
    mv.chmod(0o755)
    return bin_dir, marker


def wait_for_file(path: Path, limit: float = 30.0) -> str:
    """The text of ``path`` once it exists (fails after ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
    return path.read_text().strip()


def write_inventory(path: Path, farm: str, hosts: dict[str, dict[str, Any]]) -> None:
    groups: dict[str, dict[str, Any]] = {}
    for name, variables in hosts.items():
        group = variables.pop("_group")
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = variables
    document = {"all": {"vars": {"farmsync_farm": farm}, "children": groups}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))


class HookedNode(NodeOperations):
    """A real node with test hooks run before chosen operations (and around commit release).

    Hooks cause real faults (edit a live file, kill a connection, stop a server); the node
    underneath is the real transport.
    """

    def __init__(self, inner: NodeOperations, hooks: dict[str, Callable[[], None]]):
        super().__init__(inner.host_name)
        self.inner = inner
        self.hooks = hooks
        self.warnings = inner.warnings  # the rollout reports the real node's warnings

    def _hook(self, name: str) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook()

    def connect(self) -> None:
        self._hook("connect")
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()

    def read(self, paths: Sequence[str]) -> Any:
        self._hook("read")
        return self.inner.read(paths)

    def stage(self, items: Sequence[Any], run_id: str) -> None:
        self._hook("stage")
        self.inner.stage(items, run_id)

    def stage_and_arm(
        self, stage_items: Sequence[Any], commit_items: Sequence[Any], run_id: str, keep: int = 10
    ) -> Any:
        """The node's own merged exchange (``stage_commit`` on an agent node), unless a test
        hooks the moment between stage and arm: then stage, hook, arm, as two calls."""
        if "arm" in self.hooks:
            return super().stage_and_arm(stage_items, commit_items, run_id, keep)
        self._hook("stage")
        return self._hooked(self.inner.stage_and_arm(stage_items, commit_items, run_id, keep))

    def arm_commit(self, items: Sequence[Any], run_id: str) -> Any:
        self._hook("arm")
        return self._hooked(self.inner.arm_commit(items, run_id))

    def _hooked(self, armed: ArmedCommit) -> ArmedCommit:
        hooks = self.hooks

        class Armed(ArmedCommit):
            def release(self) -> None:
                if "release" in hooks:
                    hooks["release"]()
                armed.release()
                if "released" in hooks:
                    hooks["released"]()

            def wait(self, timeout: float) -> Any:
                states = armed.wait(timeout)
                self.cleaned_up = armed.cleaned_up
                return states

            def abort(self) -> None:
                if "abort" in hooks:
                    hooks["abort"]()
                armed.abort()

        return Armed()

    def identity(self) -> Any:
        return self.inner.identity()

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self._hook("rollback")
        self.inner.rollback(paths, run_id, expected)

    def cleanup(self, paths: Sequence[str], run_id: str, keep_backups: int = 10) -> None:
        self._hook("cleanup")
        self.inner.cleanup(paths, run_id, keep_backups)

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return self.inner.list_backups(paths)

    def recycle(self) -> None:
        self._hook("recycle")
        self.inner.recycle()

    def audit(self, request: Any) -> Any:
        self._hook("audit")
        self._hook("read")  # a rollout's first read goes through the audit op (staged runs)
        return self.inner.audit(request)


def hooked_factory(hooks_by_host: dict[str, dict[str, Callable[[], None]]]) -> NodeFactory:
    def factory(host: Any) -> NodeOperations:
        node = node_for(host)
        hooks = hooks_by_host.get(host.name)
        return HookedNode(node, hooks) if hooks else node

    return factory
