"""``farmsync doctor`` on every transport the tests have: local files, a POSIX sshd (SFTP
only), a Windows-shell sshd and a WS-Management endpoint (both running the agent's twin),
and a node nobody answers for. Read-only: every file is byte-identical afterwards."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmsync.inventory.model import Host, RecycleKind, RecycleSpec, Shell, Transport
from farmsync.orchestration.doctor import Readiness, evaluate, exit_code
from tests.cli.clikit import base_env, json_of, output_of, run_cli, snapshot
from tests.cli.test_sshd_farm import ssh_vars
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode
from tests.servers.wsman_endpoint import WsmanEndpoint
from tests.servers.wsman_fixtures import TestCA

PASSWORD_ENV = "FARMSYNC_TEST_WINRM_PASSWORD"


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    return path


def doctor(inventory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("doctor", "-i", str(inventory), *args, env=base_env(env))


def hosts_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in json_of(result)["hosts"]}


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"chattr +i needs root and a file system with flags: {done.stderr}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def local_vars(path: Path) -> dict[str, Any]:
    return {"ansible_connection": "local", "farmsync_root_configs": [str(path)]}


def test_local_nodes_ready_missing_and_not_replaceable(tmp_path: Path) -> None:
    sites = {name: tmp_path / name / "web.config" for name in ("ok", "frozen", "sealed")}
    for path in sites.values():
        path.parent.mkdir()
        path.write_bytes(SAMPLE_WEB_CONFIG)
    inventory = write_inventory(
        tmp_path / "farm.yml",
        {
            **{name: local_vars(path) for name, path in sites.items()},
            "gone": local_vars(tmp_path / "nowhere" / "web.config"),
        },
    )
    before = snapshot(tmp_path)
    with immutable(sites["frozen"]), immutable(sites["sealed"].parent):
        result = doctor(inventory, "--json")
        plain = doctor(inventory)
    assert snapshot(tmp_path) == before, "doctor wrote or left something"
    assert result.returncode == 1, output_of(result)
    hosts = hosts_of(result)
    assert {h: r["status"] for h, r in hosts.items()} == {
        "ok": "ready",
        "frozen": "not-ready",
        "sealed": "not-ready",
        "gone": "not-ready",
    }
    (frozen,) = hosts["frozen"]["files"]
    assert frozen["error"].startswith("open for append:")
    assert frozen["error_kind"] == "permission-denied"
    (sealed,) = hosts["sealed"]["files"]
    assert sealed["error"].startswith("create a file beside it:")
    assert hosts["ok"]["files"][0]["free_bytes"] > 0
    assert abs(hosts["ok"]["clock_skew_s"]) < 5
    assert plain.returncode == 1
    fixes = [line for line in plain.stderr.splitlines() if "; fix: " in line]
    assert len(fixes) == 3  # one line each, with its fix
    assert any(line.startswith("farmsync: frozen: ") and "write access" in line for line in fixes)
    assert "1 of 4 node(s) ready" in plain.stdout


def test_posix_sshd_over_sftp_only(
    tmp_path: Path, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    (node,) = sshd_farm(1)
    inventory = write_inventory(tmp_path / "farm.yml", {"lin1": ssh_vars(node)})
    before = node.config.read_bytes()
    result = doctor(inventory, "--json")
    assert result.returncode == 0, output_of(result)
    host = hosts_of(result)["lin1"]
    assert host["status"] == "ready"
    assert host["auth"] == f"ssh publickey as {node.sshd.user}"
    assert host["verified"].startswith("host key ") and "known_hosts" in host["verified"]
    assert host["os"].startswith("POSIX over SFTP (SSH-2.0-OpenSSH")
    (entry,) = host["files"]
    assert entry["replaceable"] and entry["size"] == len(before)
    assert isinstance(entry["free_bytes"], int) and entry["free_bytes"] > 0  # statvfs@openssh
    assert abs(host["clock_skew_s"]) <= 2.0  # a probe file's mtime: whole seconds
    assert node.config.read_bytes() == before
    assert sorted(p.name for p in node.config.parent.iterdir()) == ["app", "web.config"]
    with immutable(node.config):
        refused = doctor(inventory, "--json")
    assert refused.returncode == 1
    (entry,) = hosts_of(refused)["lin1"]["files"]
    assert entry["error"].startswith("open for append:") and not entry["replaceable"]


def test_windows_shell_over_ssh_runs_the_doctor_op(
    tmp_path: Path, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    (node,) = sshd_farm(1, windows=True)
    inventory = write_inventory(
        tmp_path / "farm.yml", {"win1": ssh_vars(node, ansible_shell_type="powershell")}
    )
    result = doctor(inventory, "--json")
    assert result.returncode == 0, output_of(result)
    host = hosts_of(result)["win1"]
    assert host["agent"].endswith("(farmsync twin)")  # the shim's powershell.exe is the twin
    assert host["shell"] == "powershell"
    assert host["files"][0]["replaceable"] is True


def test_winrm_endpoint_runs_the_doctor_op(
    tmp_path: Path, wsman_server: WsmanEndpoint, wsman_ca: TestCA
) -> None:
    config = Path(wsman_server.working_directory or "") / "web.config"
    config.write_bytes(SAMPLE_WEB_CONFIG)
    inventory = write_inventory(
        tmp_path / "farm.yml",
        {
            "win1": {
                "ansible_connection": "winrm",
                "ansible_host": wsman_server.host,
                "ansible_port": wsman_server.port,
                "ansible_user": wsman_server.username,
                "ansible_winrm_transport": "basic",
                "ansible_winrm_ca_trust_path": str(wsman_ca.ca_pem),
                "farmsync_password_env": PASSWORD_ENV,
                "farmsync_root_configs": [str(config)],
            }
        },
    )
    result = doctor(inventory, "--json", **{PASSWORD_ENV: wsman_server.password})
    assert result.returncode == 0, output_of(result)
    host = hosts_of(result)["win1"]
    assert host["auth"] == "winrm basic"
    assert host["verified"].startswith(f"TLS certificate checked against {wsman_ca.ca_pem} ")
    assert "(certificate sha256:" in host["verified"]
    assert wsman_server.requests["Command"] == 1  # one exchange
    assert wsman_server.password not in result.stdout + result.stderr


def test_an_unreachable_node_exits_3(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = tmp_path / "web.config"
    site.write_bytes(SAMPLE_WEB_CONFIG)
    inventory = write_inventory(
        tmp_path / "farm.yml",
        {
            "up": local_vars(site),
            "down": {
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": port,
                "farmsync_root_configs": ["/srv/web.config"],
            },
        },
    )
    result = doctor(inventory, "--timeout", "3")
    assert result.returncode == 3, output_of(result)
    assert "farmsync: down: unreachable" in result.stderr
    assert "unreachable" in result.stdout and "ready" in result.stdout


# --- the rules, from a recorded doctor.ps1-shaped answer -----------------------------------


def windows_host(**overrides: Any) -> Host:
    fields: dict[str, Any] = {
        "name": "web1",
        "farm": "f",
        "transport": Transport.WINRM,
        "address": "web1.example",
        "port": 5986,
        "shell": Shell.POWERSHELL,
        "user": "svc",
        "root_configs": (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",),
    }
    fields.update(overrides)
    return Host(**fields)


def windows_answer(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "os": "Microsoft Windows NT 10.0.17763.0",
        "agent": "Windows PowerShell 5.1.17763.5830 (Desktop)",
        "powershell": "5.1.17763.5830",
        "dotnet": "4.8 (release 528049)",
        "language_mode": "FullLanguage",
        "fips": True,
        "module_logging": True,
        "script_block_logging": False,
        "time": 1_800_000_000.0,
        "files": [
            {
                "path": r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",
                "exists": True,
                "size": 40_000,
                "free_bytes": 10 << 30,
                "replaceable": True,
            }
        ],
        "iis": {
            "installed": True,
            "was": "Running",
            "pools": [{"name": "Shop", "state": "Started", "runtime": "v4.0", "bitness": 64}],
        },
    }
    answer.update(overrides)
    return answer


IDENTITY = {"auth": "winrm ntlm", "verified": "TLS certificate checked against ca.pem"}


def test_a_healthy_windows_answer_is_ready() -> None:
    report = evaluate(windows_host(), windows_answer(), IDENTITY, 0.4)
    assert report.status is Readiness.READY and report.problems == [] and report.notes == []
    assert exit_code([report]) == 0


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        ({"powershell": "4.0"}, "Windows Management Framework 5.1"),
        ({"language_mode": "ConstrainedLanguage"}, "AppLocker/WDAC"),
        ({"dotnet": "older than 4.6 (release 379893)"}, ".NET Framework 4.6"),
        ({"files": [{"path": "x", "exists": False}]}, "farmsync_bitness"),
    ],
)
def test_what_would_stop_a_rotation_has_a_fix(answer: dict[str, Any], needle: str) -> None:
    report = evaluate(windows_host(), windows_answer(**answer), IDENTITY, 0.0)
    assert report.status is Readiness.NOT_READY
    assert any(needle in p.fix for p in report.problems), report.problems
    assert exit_code([report]) == 1


def test_iis_recycle_needs_was_and_the_named_pools() -> None:
    host = windows_host(recycle=RecycleSpec(RecycleKind.IIS, app_pools=("Shop", "Blog")))
    stopped = windows_answer(iis={"installed": True, "was": "Stopped", "pools": []})
    assert "Start-Service WAS" in evaluate(host, stopped, IDENTITY, 0).problems[0].fix
    missing = evaluate(host, windows_answer(), IDENTITY, 0)
    assert [p.what for p in missing.problems] == ["no app pool named Blog"]
    absent = windows_answer(iis={"installed": False, "was": None, "pools": []})
    assert "not installed" in evaluate(host, absent, IDENTITY, 0).problems[0].what


def test_clock_skew_and_an_unverified_node_are_notes_not_blockers() -> None:
    identity = {"auth": "winrm ntlm", "verified": "TLS certificate NOT verified (…)"}
    report = evaluate(windows_host(), windows_answer(), identity, -400.0)
    assert report.status is Readiness.READY
    assert any("clock -400 s" in n for n in report.notes)
    assert any("NOT verified" in n for n in report.notes)


def test_a_refused_login_is_not_ready_with_a_fix(
    tmp_path: Path, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    (node,) = sshd_farm(1)
    inventory = write_inventory(
        tmp_path / "farm.yml", {"lin1": ssh_vars(node, ansible_user="not-the-user")}
    )
    result = doctor(inventory, "--json")
    assert result.returncode == 1, output_of(result)  # reachable, but not ready: not 3
    host = hosts_of(result)["lin1"]
    assert host["status"] == "not-ready" and host["error_kind"] == "auth"
    assert "ansible_user" in host["problems"][0]["fix"]
