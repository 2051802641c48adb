"""One node, one identity; one file, one managed path (issue 14, High #1).

Reproductions from the fault-injection round: a node listed twice under two addresses
(``127.0.0.1`` and ``localhost`` reach the same sshd or WS-Man endpoint), and a config
directory that is a symlink to another managed directory. Both are refused after the read,
before anything is staged and before the vault is touched, naming both entries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmsync.keys.vault import KeyVault, VaultSecret
from farmsync.lab.sshd import SshdNode
from farmsync.nodes import agent
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import PASSPHRASE, TestFarm, node_config


def _add_host(farm: TestFarm, name: str, variables: dict[str, Any]) -> None:
    document = yaml.safe_load(farm.inventory_path.read_text())
    extra = document["all"]["children"].setdefault("extra", {"hosts": {}})
    extra["hosts"][name] = variables
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))


def _set_configs(farm: TestFarm, name: str, configs: list[Path]) -> None:
    document = yaml.safe_load(farm.inventory_path.read_text())
    for group in document["all"]["children"].values():
        if name in group.get("hosts", {}):
            group["hosts"][name]["farmsync_root_configs"] = [str(c) for c in configs]
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))


def _local(config: Path) -> dict[str, Any]:
    return {"ansible_connection": "local", "farmsync_root_configs": [str(config)]}


def _nothing_touched(farm: TestFarm) -> None:
    assert farm.files_unchanged()
    for config in farm.configs.values():
        assert not [p for p in config.parent.iterdir() if ".farmsync-" in p.name]
    vault = farm.context().state.vault
    if vault.exists():  # rotate opens (creates) the vault first; no key may reach it
        entries = KeyVault.open(vault, VaultSecret.from_passphrase(PASSPHRASE)).entries()
        assert entries == [], "a key was stored"
    assert Journal(farm.context().state.journal).unfinished_runs() == []


def _find(farm: TestFarm, name: str) -> dict[str, Any]:
    document = yaml.safe_load(farm.inventory_path.read_text())
    for group in document["all"]["children"].values():
        if name in group.get("hosts", {}):
            return dict(group["hosts"][name])
    raise AssertionError(name)


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows-shell"])
def test_an_sshd_listed_twice_under_two_addresses_is_refused_before_anything_changes(
    make_farm: Callable[..., TestFarm], windows: bool
) -> None:
    farm = make_farm(ssh=1 if windows else 2, ssh_windows=1 if windows else 0, winrm=0)
    name = "win2" if windows else "web2"
    sshd: SshdNode = farm.handles[name]
    variables = _find(farm, name)
    # Trust the same host key under the other name, as an operator would.
    with sshd.known_hosts_path.open("a") as f:
        f.write(f"[localhost]:{sshd.port} {sshd.host_public}\n")
    _add_host(farm, f"{name}-by-name", {**variables, "ansible_host": "localhost"})

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.BAD_INPUT and result.exit_code == 2
    message = "\n".join(result.messages)
    assert f"'{name}'" in message and f"'{name}-by-name'" in message
    assert "reach one node" in message and "ssh host key" in message
    assert str(farm.inventory_path) in message
    _nothing_touched(farm)


def test_a_winrm_endpoint_listed_twice_is_refused(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=0, ssh_windows=0, winrm=2)
    _add_host(farm, "iis1-by-name", {**_find(farm, "iis1"), "ansible_host": "localhost"})

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.BAD_INPUT
    message = "\n".join(result.messages)
    assert "'iis1'" in message and "'iis1-by-name'" in message
    # The certificate it showed, and the machine id its agent reported (the twin's: this
    # machine's /etc/machine-id, as MachineGuid on Windows).
    assert "winrm certificate sha256:" in message
    assert f"machine {agent.machine_id()}" in message and agent.machine_id()
    assert "'iis2'" not in message, "its own certificate: another node"
    _nothing_touched(farm)


@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_a_config_directory_symlinked_to_another_managed_one_is_refused(
    make_farm: Callable[..., TestFarm], tmp_path: Path, transport: str
) -> None:
    farm = make_farm(ssh=1, ssh_windows=0, winrm=0)
    config = farm.configs["web1"]
    alias_dir = config.parent.parent / "www64"
    alias_dir.symlink_to(config.parent, target_is_directory=True)
    alias = alias_dir / "web.config"
    if transport == "local":
        _add_host(farm, "here", _local(config))
        _add_host(farm, "here-too", _local(alias))
        first, second = f"here:{config}", f"here-too:{alias}"
    else:
        _set_configs(farm, "web1", [config, alias])
        first, second = f"web1:{config}", f"web1:{alias}"

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.BAD_INPUT and result.exit_code == 2
    message = "\n".join(result.messages)
    assert first in message and second in message and "are one file" in message
    _nothing_touched(farm)


def test_distinct_local_hosts_on_distinct_files_rotate(
    make_farm: Callable[..., TestFarm],
) -> None:
    """Local hosts share the machine by design: only their files are compared."""
    farm = make_farm(ssh=1, ssh_windows=0, winrm=0)
    for name in ("here", "there"):
        config = farm.root / name / "web.config"
        config.parent.mkdir()
        config.write_bytes(node_config(name))
        _add_host(farm, name, _local(config))
        farm.configs[name] = config

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.CHANGED, result.messages
    assert len(set(farm.fingerprints().values())) == 1
