"""What each command imports: a command loads what it needs and nothing else.

Every case runs ``farmsync`` in a fresh interpreter and records ``sys.modules`` at the first
``socket.connect`` (an audit hook: the moment a node is first contacted) and at exit.
Behaviour, not timings (start-up time is measured by ``bench/run.py --only startup``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from tests.cli.clikit import LocalFarm, base_env, output_of
from tests.orchestration.farmkit import write_inventory

PROBE = r"""
import json, os, sys

seen = {}


def first_contact(event, args):
    if event == "socket.connect" and "contact" not in seen:
        seen["contact"] = sorted(sys.modules)


sys.addaudithook(first_contact)
sys.argv = ["farmsync", *sys.argv[1:]]
from farmsync.cli.main import main

try:
    main()
except SystemExit as exc:
    seen["exit"] = exc.code
seen["end"] = sorted(sys.modules)
with open(os.environ["STARTUP_PROBE_OUT"], "w") as out:
    json.dump(seen, out)
"""

# Never for --help or --version: transports, XML, the vault's cipher, rich's tables and
# progress bars, the rollout engine and the audit's renderers.
NOT_FOR_HELP = (
    "lxml",
    "winrm",
    "paramiko",
    "requests",
    "cryptography.hazmat.primitives.kdf.scrypt",
    "cryptography.hazmat.primitives.ciphers.aead",
    "rich.table",
    "rich.progress",
    "farmsync.cli.audit_html",
    "farmsync.cli.audit_prometheus",
    "farmsync.cli.audit_terminal",
    "farmsync.orchestration.rollout",
)
# Never for a rotation: the audit, the doctor, their renderers.
NOT_FOR_ROTATE = (
    "farmsync.orchestration.audit.run",
    "farmsync.orchestration.audit.model",
    "farmsync.orchestration.audit.rules",
    "farmsync.orchestration.doctor",
    "farmsync.nodes.doctor_probe",
    "farmsync.cli.doctor_view",
    "farmsync.cli.audit_html",
    "farmsync.cli.audit_prometheus",
    "farmsync.cli.audit_terminal",
)
WINRM_STACK = ("winrm", "requests", "farmsync.nodes.winrm", "farmsync.nodes.psagent")
SSH_STACK = ("paramiko", "farmsync.nodes.ssh")


def probe(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "probe.json"
    run_env = {**(env or base_env()), "STARTUP_PROBE_OUT": str(out)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.is_file(), output_of(result)
    seen: dict[str, Any] = json.loads(out.read_text())
    seen["output"] = output_of(result)
    return seen


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The ``names`` (packages count with their submodules) among ``modules``."""
    return sorted(
        {n for n in names for m in modules if m == n or m.startswith(n + ".")},
    )


def every_command() -> list[tuple[str, ...]]:
    """The path of every command and subcommand, from the click group itself."""
    from farmsync.cli.main import cli

    paths: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in sorted(group.commands.items()):
            paths.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(cli, ())
    return paths


def test_the_command_list_is_complete() -> None:
    commands = every_command()
    assert ("rotate",) in commands and ("vault", "rekey") in commands
    assert ("audit",) in commands and ("doctor",) in commands and ("lab", "up") in commands


@pytest.mark.parametrize(
    "args",
    [("--help",), ("--version",), *[(*path, "--help") for path in every_command()]],
    ids=lambda args: " ".join(args),
)
def test_help_and_version_load_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    seen = probe(tmp_path, *args)

    assert seen["exit"] in (0, None), seen["output"]
    assert "contact" not in seen  # nothing was contacted
    assert loaded(seen["end"], NOT_FOR_HELP) == [], seen["output"]


def test_a_rotation_of_local_hosts_loads_no_transport_no_audit_no_doctor(
    local_farm: LocalFarm, tmp_path: Path
) -> None:
    for args in (("--check",), (), ("--json",)):
        seen = probe(
            tmp_path, "rotate", "-i", str(local_farm.inventory), *args, env=local_farm.env()
        )

        assert seen["exit"] == 0, seen["output"]
        assert loaded(seen["end"], NOT_FOR_ROTATE + WINRM_STACK + SSH_STACK) == []
        assert "farmsync.orchestration.rollout" in seen["end"]  # the probe sees what loaded
        if "--json" in args:  # no table, no progress bar: no rich at all
            assert loaded(seen["end"], ("rich",)) == [], seen["output"]


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreachable_farm(tmp_path: Path, variables: dict[str, Any]) -> Path:
    inventory = tmp_path / "farm.yml"
    host = {
        "_group": "web",
        "ansible_host": "127.0.0.1",
        "ansible_port": _free_port(),
        "farmsync_root_configs": ["/srv/www/web.config"],
        **variables,
    }
    write_inventory(inventory, "startup", {"web1": host})
    return inventory


def _rotate_check(tmp_path: Path, inventory: Path) -> dict[str, Any]:
    env = base_env(
        {
            "FARMSYNC_STATE_DIR": str(tmp_path / "state"),
            "FARMSYNC_VAULT_PASSPHRASE": "startup probe passphrase",
            "FARMSYNC_WINRM_PASSWORD": "startup probe password",
        }
    )
    seen = probe(tmp_path, "rotate", "--check", "--json", "-i", str(inventory), env=env)
    assert seen["exit"] == 3, seen["output"]  # the node is unreachable: could not run
    assert "contact" in seen, seen["output"]  # and it was tried
    return seen


def test_a_rotation_of_ssh_hosts_loads_no_winrm_and_no_audit(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not read: the connection is refused first\n")
    key.chmod(0o600)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    inventory = _unreachable_farm(
        tmp_path,
        {
            "ansible_connection": "ssh",
            "ansible_user": "farmsync",
            "ansible_ssh_private_key_file": str(key),
            "farmsync_known_hosts": str(known_hosts),
        },
    )

    seen = _rotate_check(tmp_path, inventory)

    assert loaded(seen["contact"], SSH_STACK) == sorted(SSH_STACK)  # what it needs is there
    assert loaded(seen["end"], NOT_FOR_ROTATE + WINRM_STACK) == [], seen["output"]


def test_a_rotation_of_winrm_hosts_loads_no_paramiko_and_no_audit(tmp_path: Path) -> None:
    inventory = _unreachable_farm(
        tmp_path,
        {
            "ansible_connection": "winrm",
            "ansible_winrm_scheme": "https",
            "ansible_winrm_server_cert_validation": "ignore",
            "ansible_user": "farmsync",
            "farmsync_password_env": "FARMSYNC_WINRM_PASSWORD",
        },
    )

    seen = _rotate_check(tmp_path, inventory)

    assert loaded(seen["contact"], ("winrm", "farmsync.nodes.winrm")) == [
        "farmsync.nodes.winrm",
        "winrm",
    ]
    assert loaded(seen["end"], NOT_FOR_ROTATE + SSH_STACK) == [], seen["output"]
