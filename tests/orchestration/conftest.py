"""The mixed test farm: real sshd nodes (POSIX and Windows-shell) and real WinRM endpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farmsync.lab.sshd import SshdKeys, SshdNode
from tests.orchestration.farmkit import TestFarm, node_config, write_inventory
from tests.servers.wsman_endpoint import WsmanEndpoint
from tests.servers.wsman_fixtures import TestCA

WINRM_PASSWORD_ENV = "FARMSYNC_TEST_WINRM_PASSWORD"


@pytest.fixture
def make_farm(
    tmp_path: Path,
    sshd_keys: SshdKeys,
    powershell_shim: Path,
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_ca: TestCA,
) -> Iterator[Callable[..., TestFarm]]:
    """``make_farm(ssh=3, ssh_windows=1, winrm=2)``: a farm of real nodes, stopped at teardown."""
    started: list[SshdNode] = []

    def make(
        ssh: int = 3, ssh_windows: int = 1, winrm: int = 2, farm: str = "testfarm"
    ) -> TestFarm:
        hosts: dict[str, dict[str, Any]] = {}
        configs: dict[str, Path] = {}
        handles: dict[str, Any] = {}
        password = None
        for index in range(ssh + ssh_windows):
            windows = index >= ssh
            name = f"{'win' if windows else 'web'}{index + 1}"
            node_dir = tmp_path / name
            www = node_dir / "www"
            www.mkdir(parents=True)
            config = www / "web.config"
            config.write_bytes(node_config(name))
            sshd = SshdNode(
                node_dir / "sshd", keys=sshd_keys, path_prefix=(powershell_shim,) if windows else ()
            )
            sshd.start()
            started.append(sshd)
            handles[name] = sshd
            configs[name] = config
            hosts[name] = {
                "_group": "ssh_windows" if windows else "ssh_linux",
                "ansible_host": sshd.host,
                "ansible_port": sshd.port,
                "ansible_user": sshd.user,
                "ansible_connection": "ssh",
                "ansible_ssh_private_key_file": str(sshd.client_key_path),
                "farmsync_known_hosts": str(sshd.known_hosts_path),
                "farmsync_root_configs": [str(config)],
                **({"ansible_shell_type": "powershell"} if windows else {}),
            }
        for index in range(winrm):
            name = f"iis{index + 1}"
            www = tmp_path / name / "www"
            www.mkdir(parents=True)
            config = www / "web.config"
            config.write_bytes(node_config(name))
            kwargs: dict[str, Any] = {"username": "farmsync"}
            if password is not None:
                kwargs["password"] = password
            server = make_wsman_server(**kwargs)
            password = server.password
            handles[name] = server
            configs[name] = config
            hosts[name] = {
                "_group": "iis",
                "ansible_host": server.host,
                "ansible_port": server.port,
                "ansible_user": server.username,
                "ansible_connection": "winrm",
                "ansible_winrm_transport": "basic",
                "ansible_winrm_scheme": "https",
                "ansible_winrm_ca_trust_path": str(wsman_ca.ca_pem),
                "farmsync_password_env": WINRM_PASSWORD_ENV,
                "farmsync_root_configs": [str(config)],
            }
        inventory = tmp_path / "farm.yml"
        write_inventory(inventory, farm, hosts)
        env = {
            "FARMSYNC_STATE_DIR": str(tmp_path / "state"),
            "FARMSYNC_VAULT_PASSPHRASE": "correct horse battery staple",
        }
        if password is not None:
            env[WINRM_PASSWORD_ENV] = password
        originals = {h: p.read_bytes() for h, p in configs.items()}
        return TestFarm(tmp_path, inventory, configs, originals, env, handles)

    yield make
    for sshd in started:
        sshd.stop()
