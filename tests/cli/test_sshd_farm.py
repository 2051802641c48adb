"""The command line against real sshd nodes (POSIX and Windows-shell) next to a local host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.cli.clikit import FARM, LocalFarm, json_of, output_of
from tests.orchestration.farmkit import file_key
from tests.servers.sshd_fixtures import SshdTestNode


def ssh_vars(node: SshdTestNode, **extra: Any) -> dict[str, Any]:
    sshd = node.sshd
    return {
        "ansible_connection": "ssh",
        "ansible_host": sshd.host,
        "ansible_port": sshd.port,
        "ansible_user": sshd.user,
        "ansible_ssh_private_key_file": str(sshd.client_key_path),
        "farmsync_known_hosts": str(sshd.known_hosts_path),
        "farmsync_root_configs": [str(node.config)],
        **extra,
    }


def test_rotate_over_ssh_and_local_puts_one_key_on_every_node(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    (posix,) = sshd_farm(1)
    (windows,) = sshd_farm(1, windows=True)
    document = yaml.safe_load(local_farm.inventory.read_text())
    document["all"]["children"]["ssh"] = {
        "hosts": {
            "lin1": ssh_vars(posix),
            "win1": ssh_vars(windows, ansible_shell_type="powershell"),
        }
    }
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    configs: dict[str, Path] = {**local_farm.configs, "lin1": posix.config, "win1": windows.config}

    result = local_farm.run("rotate", "--json")

    assert result.returncode == 0, output_of(result)
    doc = json_of(result)
    assert doc["farm"] == FARM and doc["outcome"] == "changed"
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {h: "changed" for h in configs}
    assert {h: file_key(p).fingerprint() for h, p in configs.items()} == {
        h: doc["target_fingerprint"] for h in configs
    }
    for path in (posix.config, windows.config):
        assert sorted(path.parent.glob("web.config.farmsync-*.bak"))  # a backup on the node
        assert not sorted(path.parent.glob("*.new"))  # and no staging file left

    again = local_farm.run("sync", "--json")

    assert again.returncode == 0, output_of(again)
    assert json_of(again)["outcome"] == "unchanged"
