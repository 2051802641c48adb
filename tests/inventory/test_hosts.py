"""Resolved host settings: transports, ports, shells, root configs, passwords, policy, warnings."""

from __future__ import annotations

import os

import pytest

from farmsync.inventory.model import (
    Policy,
    RecycleKind,
    RecycleSpec,
    Secret,
    Shell,
    Transport,
)

from .conftest import Loader

WIN4_32 = r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config"
WIN4_64 = r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config"
WIN2_32 = r"%windir%\Microsoft.NET\Framework\v2.0.50727\CONFIG\web.config"
WIN2_64 = r"%windir%\Microsoft.NET\Framework64\v2.0.50727\CONFIG\web.config"


@pytest.mark.parametrize(
    ("frameworks", "bitness", "expected"),
    [
        (None, None, (WIN4_32, WIN4_64)),
        ("[v4.0.30319, v2.0.50727]", None, (WIN4_32, WIN4_64, WIN2_32, WIN2_64)),
        ("[v2.0.50727]", "[64]", (WIN2_64,)),
        ('["4.0.30319"]', "[64, 32]", (WIN4_64, WIN4_32)),
        ("[v4.0.30319, v4.0.30319]", "[32]", (WIN4_32,)),
    ],
)
def test_computed_windows_root_configs(
    frameworks: str | None, bitness: str | None, expected: tuple[str, ...], load: Loader
) -> None:
    lines = ["all:", "  vars:", "    ansible_shell_type: powershell"]
    lines.append("    farmsync_policy: {validation: SHA1}")  # v2.0.50727 needs SHA1
    if frameworks:
        lines.append(f"    farmsync_frameworks: {frameworks}")
    if bitness:
        lines.append(f"    farmsync_bitness: {bitness}")
    lines += ["  hosts:", "    web01:"]
    host = load("\n".join(lines) + "\n").hosts["web01"]
    assert host.root_configs == expected
    assert host.shell is Shell.POWERSHELL
    assert host.transport is Transport.SSH


def test_explicit_root_configs_override_windows_paths(load: Loader) -> None:
    host = load(
        r"""
        all:
          hosts:
            web01:
              ansible_shell_type: cmd
              farmsync_root_configs: ['D:\dotnet\web.config']
        """
    ).hosts["web01"]
    assert host.root_configs == (r"D:\dotnet\web.config",)
    assert host.shell is Shell.POWERSHELL


@pytest.mark.parametrize(
    ("host_vars", "transport", "scheme", "port"),
    [
        ("{ansible_connection: winrm}", Transport.WINRM, "https", 5986),
        ("{ansible_connection: winrm, ansible_winrm_scheme: http}", Transport.WINRM, "http", 5985),
        ("{ansible_connection: winrm, ansible_port: 5985}", Transport.WINRM, "http", 5985),
        ("{ansible_connection: winrm, ansible_port: '15986'}", Transport.WINRM, "https", 15986),
        ("{ansible_connection: ansible.windows.winrm}", Transport.WINRM, "https", 5986),
        ("{ansible_shell_type: powershell}", Transport.SSH, "https", 22),
        ("{ansible_connection: paramiko, ansible_shell_type: cmd}", Transport.SSH, "https", 22),
        (
            "{ansible_connection: ssh, ansible_port: 2222, ansible_shell_type: powershell}",
            Transport.SSH,
            "https",
            2222,
        ),
    ],
)
def test_transport_and_port_defaults(
    host_vars: str, transport: Transport, scheme: str, port: int, load: Loader
) -> None:
    host = load(
        f"""
        all:
          vars: {{ansible_user: u, farmsync_password_env: PW}}
          hosts:
            web01: {host_vars}
        """,
        env={"PW": "pw"},
    ).hosts["web01"]
    assert (host.transport, host.winrm.scheme, host.port) == (transport, scheme, port)
    assert host.address == "web01"


def test_local_and_posix_hosts(load: Loader) -> None:
    inventory = load(
        """
        all:
          hosts:
            lab1:
              ansible_connection: local
              farmsync_root_configs: [/srv/lab1/web.config]
            mono1:
              ansible_host: 127.0.0.1
              ansible_port: 2201
              ansible_user: deploy
              ansible_ssh_private_key_file: ~/.ssh/id_ed25519
              farmsync_known_hosts: /etc/farmsync/known_hosts
              farmsync_ssh_jump: jump@bastion.example:2222
              farmsync_root_configs:
                - /etc/mono/4.5/web.config
                - /etc/mono/4.5/web.config
              farmsync_app_configs: [/srv/app/web.config]
              farmsync_recycle: {command: "systemctl restart xsp"}
        """
    )
    lab, mono = inventory.hosts["lab1"], inventory.hosts["mono1"]
    assert (lab.transport, lab.address, lab.port, lab.shell) == (
        Transport.LOCAL,
        "localhost",
        0,
        Shell.POSIX,
    )
    assert (mono.transport, mono.address, mono.port, mono.user) == (
        Transport.SSH,
        "127.0.0.1",
        2201,
        "deploy",
    )
    assert mono.root_configs == ("/etc/mono/4.5/web.config",)  # listed twice, managed once
    assert mono.app_configs == ("/srv/app/web.config",)
    assert mono.recycle == RecycleSpec(kind=RecycleKind.COMMAND, command="systemctl restart xsp")
    # "~" is the controller user's home, expanded here (paramiko would open "~" literally).
    assert mono.ssh.private_key_file == os.path.expanduser("~/.ssh/id_ed25519")
    assert mono.ssh.known_hosts_file == "/etc/farmsync/known_hosts"
    assert mono.ssh.jump_host == "jump@bastion.example:2222"
    assert mono.password is None


def test_winrm_settings(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: CONTOSO\\svc
            farmsync_password_env: PW
          hosts:
            web01:
              ansible_winrm_transport: [kerberos]
              ansible_winrm_server_cert_validation: ignore
              ansible_winrm_path: /wsman-alt
            web02:
              ansible_winrm_transport: basic
              ansible_winrm_scheme: http
              farmsync_winrm_allow_insecure_basic: true
            web03:
              ansible_winrm_transport: certificate
              ansible_winrm_cert_pem: /etc/farmsync/client.pem
              ansible_winrm_cert_key_pem: /etc/farmsync/client.key
              ansible_winrm_ca_trust_path: /etc/farmsync/ca.pem
              farmsync_timeout: 5
        """,
        env={"PW": "pw"},
    )
    web01, web02, web03 = (inventory.hosts[n] for n in ("web01", "web02", "web03"))
    assert (web01.winrm.transport, web01.winrm.cert_validation, web01.winrm.path) == (
        "kerberos",
        False,
        "/wsman-alt",
    )
    assert (web02.winrm.transport, web02.winrm.scheme, web02.port) == ("basic", "http", 5985)
    assert web02.winrm.allow_insecure_basic is True
    assert web03.winrm.cert_pem == "/etc/farmsync/client.pem"
    assert web03.winrm.cert_key_pem == "/etc/farmsync/client.key"
    assert web03.winrm.ca_trust_path == "/etc/farmsync/ca.pem"
    assert web03.timeout == 5.0
    assert web01.user == "CONTOSO\\svc"
    # Ignoring certificates is allowed, and warned about with its line.
    assert [(w.line, "cert_validation: ignore" in w.message) for w in inventory.warnings] == [
        (9, True)
    ]


def test_password_from_environment(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
            farmsync_password_env: FARM_PW
          hosts:
            web01:
            web02:
        """,
        env={"FARM_PW": "correct horse"},
    )
    assert inventory.warnings == ()
    for host in inventory.hosts.values():
        assert host.password == Secret("correct horse")
        assert host.password is not None and host.password.reveal() == "correct horse"


def test_ansible_env_lookup_is_read(load: Loader) -> None:
    host = load(
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_user: u
              ansible_password: "{{ lookup('ansible.builtin.env', 'WIN_PW') }}"
        """,
        env={"WIN_PW": "from-env"},
    ).hosts["web01"]
    assert host.password == Secret("from-env")


def test_plaintext_password_works_with_one_warning_per_line(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
            ansible_password: Hunter2-plain
          hosts:
            web01:
            web02:
        """
    )
    assert all(h.password == Secret("Hunter2-plain") for h in inventory.hosts.values())
    assert len(inventory.warnings) == 1
    warning = inventory.warnings[0]
    assert warning.line == 5
    assert "plaintext ansible_password" in warning.message
    assert "Hunter2-plain" not in warning.message


def test_secret_never_in_repr(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
          hosts:
            web01:
              ansible_password: Hunter2-plain
              ansible_become_password: Become-s3cret
            web02:
              farmsync_password_env: PW
        """,
        env={"PW": "Env-s3cret"},
    )
    text = repr(inventory) + "".join(repr(h) + str(h) for h in inventory.hosts.values())
    text += repr(dict(inventory.hosts["web01"].variables))
    for secret in ("Hunter2-plain", "Become-s3cret", "Env-s3cret"):
        assert secret not in text
    assert "Secret('********')" in repr(inventory.hosts["web01"])
    variables = inventory.hosts["web01"].variables
    assert isinstance(variables["ansible_password"], Secret)
    assert isinstance(variables["ansible_become_password"], Secret)


def test_unknown_variables_are_kept(load: Loader) -> None:
    host = load(
        """
        all:
          vars:
            ansible_python_interpreter: /usr/bin/python3
            ansible_become: true
            ntp_server: ntp.contoso.example
          hosts:
            web01: {ansible_shell_type: powershell}
        """
    ).hosts["web01"]
    assert host.variables["ntp_server"] == "ntp.contoso.example"
    assert host.variables["ansible_become"] is True


def test_policy_and_recycle_forms(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_shell_type: powershell
            farmsync_policy:
              validation: hmacsha512
              decryption: auto
              compatibility_mode: framework45
              max_key_age: 1w12h
          hosts:
            web01: {farmsync_recycle: iis}
            web02: {farmsync_recycle: {iis: [ShopPool, ShopPool, "Api Pool"]}}
            web03: {farmsync_recycle: none}
        """
    )
    web01, web02, web03 = inventory.hosts.values()
    assert web01.policy == Policy("HMACSHA512", "Auto", "Framework45", 7.5)
    assert web01.recycle == RecycleSpec(kind=RecycleKind.IIS)
    assert web02.recycle == RecycleSpec(kind=RecycleKind.IIS, app_pools=("ShopPool", "Api Pool"))
    assert web03.recycle == RecycleSpec()


def test_defaults(load: Loader) -> None:
    inventory = load(
        """
        all:
          hosts:
            web01: {ansible_shell_type: powershell}
        """,
        name="shop-prod.yaml",
    )
    host = inventory.hosts["web01"]
    assert inventory.farm == host.farm == "shop-prod"
    assert host.policy == Policy()
    assert host.recycle == RecycleSpec()
    assert host.timeout == 30.0
    assert host.app_configs == ()


def test_host_ranges_and_host_port_keys(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars: {ansible_shell_type: powershell}
          children:
            web:
              hosts:
                web[01:03].contoso.example:
                  farmsync_timeout: 9
                db[a:b]:
                node[8:10]:
                mono.example:2201:
                "[fd00::5]:2202":
        """
    )
    assert list(inventory.hosts) == [
        "web01.contoso.example",
        "web02.contoso.example",
        "web03.contoso.example",
        "dba",
        "dbb",
        "node8",
        "node9",
        "node10",
        "mono.example",
        "fd00::5",
    ]
    assert inventory.hosts["web02.contoso.example"].timeout == 9.0
    assert inventory.hosts["web02.contoso.example"].source_line == 6
    assert inventory.hosts["mono.example"].port == 2201
    assert inventory.hosts["fd00::5"].port == 2202
    assert inventory.groups["web"][0] == "web01.contoso.example"


def test_unexpected_group_key_is_a_warning(load: Loader) -> None:
    inventory = load(
        """
        all:
          host:
            web02:
          hosts:
            web01: {ansible_shell_type: powershell}
        """
    )
    assert list(inventory.hosts) == ["web01"]
    assert [(w.line, "unexpected key 'host'" in w.message) for w in inventory.warnings] == [
        (2, True)
    ]


def test_older_ansible_ssh_spellings_are_read_with_a_warning(load: Loader) -> None:
    inv = load(
        """
        all:
          hosts:
            web1:
              ansible_ssh_host: 10.0.0.5
              ansible_ssh_port: 2222
              ansible_ssh_user: deploy
              farmsync_root_configs: [/etc/mono/4.5/web.config]
            web2:
              ansible_ssh_host: 10.0.0.6
              ansible_host: 10.0.0.7
              farmsync_root_configs: [/etc/mono/4.5/web.config]
        """
    )
    web1, web2 = inv.hosts["web1"], inv.hosts["web2"]
    assert (web1.address, web1.port, web1.user) == ("10.0.0.5", 2222, "deploy")
    assert web2.address == "10.0.0.7"  # the current name wins over the old one
    warned = [w for w in inv.warnings if "older name" in w.message]
    assert [w.line for w in warned][:3] == [4, 5, 6]
