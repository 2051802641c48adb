"""Bad inventories: one InputError (exit code 2) naming the file, the exact line and the problem."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from farmsync.errors import ExitCode

from .conftest import ErrorLoader

# A valid WinRM host body (flow style) reused by cases that break something else.
WIN = "ansible_connection: winrm, ansible_user: u, farmsync_password_env: PW"
# The same as group vars, for block-style cases; 4 lines.
WIN_VARS = """  vars:
            ansible_connection: winrm
            ansible_user: u
            farmsync_password_env: PW"""


@dataclass(frozen=True)
class Case:
    id: str
    yaml: str
    fragment: str
    line: int
    env: dict[str, str] = field(default_factory=lambda: {"PW": "pw"})


CASES = [
    Case(
        "yaml-syntax",
        """
        all:
          hosts:
            web01:
              ansible_host: 10.0.0.1
             ansible_port: 22
        """,
        "invalid YAML",
        5,
    ),
    Case(
        "yaml-unclosed-flow",
        """
        all:
          hosts:
            web01: {ansible_host: 10.0.0.1
            web02:
        """,
        "invalid YAML",
        4,
    ),
    Case(
        "duplicate-host",
        """
        all:
          hosts:
            web01:
              farmsync_root_configs: [/a/web.config]
            web01:
              farmsync_root_configs: [/b/web.config]
        """,
        "duplicate host 'web01' (first at line 3)",
        5,
    ),
    Case(
        "duplicate-key-in-vars",
        """
        all:
          vars:
            farmsync_timeout: 10
            farmsync_timeout: 20
          hosts:
            web01:
        """,
        "duplicate key 'farmsync_timeout' (first at line 3)",
        4,
    ),
    Case(
        "duplicate-group",
        """
        all:
          children:
            east:
              hosts:
                web01:
            east:
              hosts:
                web02:
        """,
        "duplicate group 'east' (first at line 3)",
        6,
    ),
    Case(
        "psrp-unsupported",
        """
        all:
          vars:
            ansible_user: u
          hosts:
            web01:
              ansible_connection: psrp
        """,
        "unsupported transport 'psrp'",
        6,
    ),
    Case(
        "docker-unsupported",
        """
        all:
          hosts:
            web01: {ansible_connection: docker}
        """,
        "unsupported transport 'docker'",
        3,
    ),
    Case(
        "wrong-type-list-item",
        """
        all:
          hosts:
            web01:
              farmsync_bitness:
                - 32
                - 48
        """,
        "bitness must be 32 or 64, got 48",
        6,
    ),
    Case(
        "wrong-type-scalar-not-list",
        """
        all:
          vars:
            farmsync_frameworks: v4.0.30319
          hosts:
            web01: {ansible_connection: winrm}
        """,
        "farmsync_frameworks: expected a list of framework versions, got a string",
        3,
    ),
    Case(
        "wrong-type-timeout",
        """
        all:
          vars:
            farmsync_timeout: soon
          hosts:
            web01:
        """,
        "farmsync_timeout: expected a number of seconds, got a string",
        3,
    ),
    Case(
        "wrong-type-bool",
        """
        all:
          vars:
            farmsync_winrm_allow_insecure_basic: "yes"
          hosts:
            web01:
        """,
        "expected true or false",
        3,
    ),
    Case(
        "envelope-below-winrm-minimum",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              farmsync_winrm_max_envelope_kb: 16
        """,
        "farmsync_winrm_max_envelope_kb: MaxEnvelopeSizekb is at least 32, got 16",
        5,
    ),
    Case(
        "unknown-framework",
        """
        all:
          vars:
            farmsync_frameworks: [v4.0.30319, v3.5]
          hosts:
            web01:
        """,
        "unknown framework 'v3.5'",
        3,
    ),
    Case(
        "unknown-farmsync-variable",
        """
        all:
          children:
            web:
              vars:
                farmsync_framework: [v4.0.30319]
              hosts:
                web01:
        """,
        "unknown farmsync variable 'farmsync_framework' (did you mean 'farmsync_frameworks'?)",
        5,
    ),
    Case(
        "unknown-farmsync-variable-in-host",
        """
        all:
          hosts:
            web01:
              farmsync_recylce: iis
        """,
        "did you mean 'farmsync_recycle'?",
        4,
    ),
    Case(
        "missing-password-env",
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
            farmsync_password_env: FARM_PW
          hosts:
            web01:
        """,
        "FARM_PW, named by farmsync_password_env to hold the password, is not set",
        5,
        env={},
    ),
    Case(
        "empty-password-env",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_user: u
              farmsync_password_env: FARM_PW
        """,
        "FARM_PW, named by farmsync_password_env to hold the password, is empty",
        6,
        env={"FARM_PW": ""},
    ),
    Case(
        "missing-env-from-ansible-lookup",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_user: u
              ansible_password: "{{ lookup('env', 'WIN_PW') }}"
        """,
        "environment variable WIN_PW, named by ansible_password lookup",
        6,
        env={},
    ),
    Case(
        "winrm-without-password",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_user: u
        """,
        "WinRM ntlm authentication needs a password",
        3,
    ),
    Case(
        "bad-env-name",
        """
        all:
          vars:
            farmsync_password_env: "MY-PASSWORD"
          hosts:
            web01:
        """,
        "'MY-PASSWORD' is not a valid environment variable name",
        3,
    ),
    Case(
        "both-password-sources",
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
            farmsync_password_env: PW
          hosts:
            web01:
              ansible_password: hunter2
        """,
        "both ansible_password (line 8) and farmsync_password_env (line 5)",
        8,
    ),
    Case("empty-file", "", "inventory is empty", 1),
    Case(
        "empty-farm",
        """
        all:
          children:
            web:
              hosts:
        """,
        "no hosts: the farm is empty",
        1,
    ),
    Case(
        "ini-inventory",
        """
        [web]
        web01 ansible_host=10.0.0.1
        """,
        "INI inventories are not read",
        1,
    ),
    Case(
        "ini-inventory-without-sections",
        """
        web01 ansible_host=10.0.0.1
        """,
        "INI inventories are not read",
        1,
    ),
    Case(
        "group-not-mapping",
        """
        all:
          children:
            web: [web01, web02]
        """,
        "group 'web' must be a mapping",
        3,
    ),
    Case(
        "hosts-as-list",
        """
        all:
          hosts:
            - web01
        """,
        "hosts: of group 'all' must be a mapping of host names",
        2,
    ),
    Case(
        "host-body-not-mapping",
        """
        all:
          hosts:
            web01: 10.0.0.1
        """,
        "host 'web01' must be followed by a mapping of variables",
        3,
    ),
    Case(
        "same-address-twice",
        f"""
        all:
        {WIN_VARS}
          hosts:
            web01:
              ansible_host: 10.0.0.5
            web01-alias:
              ansible_host: 10.0.0.5
        """,
        "hosts 'web01' (line 7) and 'web01-alias' both reach 10.0.0.5:5986",
        9,
    ),
    Case(
        "same-name-as-address",
        """
        all:
          vars:
            farmsync_root_configs: [/etc/mono/4.5/web.config]
          hosts:
            node1.example:
            node1-by-ip:
              ansible_host: NODE1.example
        """,
        "both reach NODE1.example:22",
        6,
    ),
    Case(
        "same-ipv6-address-spelled-twice",
        """
        all:
          vars:
            ansible_shell_type: powershell
          hosts:
            a: {ansible_host: "::1"}
            b: {ansible_host: "0:0::1"}
        """,
        "the same node would be managed twice",
        6,
    ),
    Case(
        "local-same-file-twice",
        """
        all:
          vars:
            ansible_connection: local
          hosts:
            a:
              farmsync_root_configs: [/srv/a/web.config]
            b:
              farmsync_root_configs: [/srv/a/web.config]
        """,
        "the same file would be managed twice",
        7,
    ),
    Case(
        "two-farms",
        f"""
        all:
        {WIN_VARS}
            farmsync_farm: shop
          hosts:
            web01:
            web02:
              farmsync_farm: intranet
        """,
        "all hosts must share one farm (farmsync_farm): 'web02' differs from 'web01'",
        10,
    ),
    Case(
        "two-policies",
        f"""
        all:
        {WIN_VARS}
          hosts:
            web01:
            web02:
              farmsync_policy: {{validation: HMACSHA512}}
        """,
        "all hosts must share one policy",
        9,
    ),
    Case(
        "posix-host-without-root-configs",
        """
        all:
          hosts:
            web01:
              ansible_host: 10.0.0.1
        """,
        "host 'web01' is not a Windows host",
        3,
    ),
    Case(
        "posix-relative-root-config",
        """
        all:
          hosts:
            web01:
              farmsync_root_configs: [etc/web.config]
        """,
        "must be absolute",
        4,
    ),
    Case(
        "winrm-with-sh",
        f"""
        all:
        {WIN_VARS}
          hosts:
            web01:
              ansible_shell_type: sh
        """,
        "WinRM hosts use powershell",
        8,
    ),
    Case(
        "unknown-shell",
        """
        all:
          hosts:
            web01: {ansible_shell_type: fish}
        """,
        "unsupported shell type 'fish'",
        3,
    ),
    Case(
        "policy-unknown-key",
        f"""
        all:
          vars:
            farmsync_policy:
              validation: HMACSHA256
              max_age: 90d
          hosts:
            web01: {{{WIN}}}
        """,
        "unknown policy key 'max_age' (did you mean 'max_key_age'?)",
        5,
    ),
    Case(
        "policy-bad-algorithm",
        f"""
        all:
          vars:
            farmsync_policy:
              decryption: Blowfish
          hosts:
            web01: {{{WIN}}}
        """,
        "unknown decryption algorithm 'Blowfish'",
        4,
    ),
    Case(
        "policy-bad-age",
        f"""
        all:
          vars:
            farmsync_policy:
              validation: SHA1
              max_key_age: 90 days
          hosts:
            web01: {{{WIN}}}
        """,
        "max_key_age: invalid duration '90 days'",
        5,
    ),
    Case(
        "policy-bad-compat",
        f"""
        all:
          vars:
            farmsync_policy: {{compatibility_mode: Framework40}}
          hosts:
            web01: {{{WIN}}}
        """,
        "unknown compatibility mode 'Framework40'",
        3,
    ),
    Case(
        "v2-with-hmacsha256",
        f"""
        all:
          vars:
            farmsync_frameworks: [v2.0.50727]
          hosts:
            web01: {{{WIN}}}
        """,
        "v2.0.50727 does not support validation HMACSHA256",
        3,
    ),
    Case(
        "recycle-bad-word",
        """
        all:
          hosts:
            web01:
              farmsync_recycle: reboot
        """,
        "'reboot' is not a recycle action",
        4,
    ),
    Case(
        "recycle-bad-action",
        """
        all:
          hosts:
            web01:
              farmsync_recycle:
                iss: [Pool]
        """,
        "unknown recycle action 'iss' (did you mean 'iis'?)",
        5,
    ),
    Case(
        "recycle-iis-on-linux",
        """
        all:
          hosts:
            web01:
              farmsync_root_configs: [/etc/mono/4.5/web.config]
              farmsync_recycle: iis
        """,
        "farmsync_recycle iis needs a Windows host",
        5,
    ),
    Case(
        "vault-value",
        """
        all:
          hosts:
            web01:
              ansible_password: !vault |
                $ANSIBLE_VAULT;1.1;AES256
                6136
        """,
        "Ansible Vault values (!vault) are not supported",
        4,
    ),
    Case(
        "jinja-template",
        """
        all:
          hosts:
            web01:
              ansible_host: "{{ inventory_hostname }}.corp"
        """,
        "Jinja templates are not supported",
        4,
    ),
    Case(
        "group-cycle",
        """
        all:
          children:
            a:
              children:
                b:
                  children:
                    a:
                      hosts:
                        web01:
        """,
        "is its own ancestor",
        3,
    ),
    Case(
        "basic-over-http",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_user: u
              farmsync_password_env: PW
              ansible_winrm_scheme: http
              ansible_winrm_transport: basic
        """,
        "Basic authentication over plain HTTP",
        8,
    ),
    Case(
        "certificate-without-pem",
        """
        all:
          hosts:
            web01:
              ansible_connection: winrm
              ansible_winrm_transport: certificate
        """,
        "needs ansible_winrm_cert_pem and ansible_winrm_cert_key_pem",
        5,
    ),
    Case(
        "winrm-two-transports",
        """
        all:
          hosts:
            web01:
              ansible_winrm_transport: ntlm,kerberos
        """,
        "exactly one WinRM transport",
        4,
    ),
    Case(
        "bad-port",
        """
        all:
          hosts:
            web01:
              ansible_port: 70000
        """,
        "ansible_port: port 70000 is outside 1-65535",
        4,
    ),
    Case(
        "bad-jump",
        """
        all:
          hosts:
            web01:
              farmsync_root_configs: [/w.config]
              farmsync_ssh_jump: "user@@bastion"
        """,
        "is not of the form [user@]host[:port]",
        5,
    ),
    Case(
        "bad-host-range",
        """
        all:
          hosts:
            web[9:1]:
        """,
        "start is after end",
        3,
    ),
    Case(
        "host-range-width",
        """
        all:
          hosts:
            web[01:100]:
        """,
        "same width",
        3,
    ),
    Case(
        "group-priority-not-int",
        """
        all:
          children:
            web:
              vars:
                ansible_group_priority: high
              hosts:
                web01:
        """,
        "ansible_group_priority: expected a whole number",
        5,
    ),
    Case(
        "all-as-child",
        """
        web:
          children:
            all:
        """,
        "group 'all' cannot be the child of another group",
        3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_inventory_is_one_clear_error(case: Case, load_error: ErrorLoader) -> None:
    error = load_error(case.yaml, env=case.env)
    assert case.fragment in error.message
    assert error.line == case.line, error
    assert error.exit_code == ExitCode.BAD_INPUT
    # The one-line rendering names file and line.
    assert str(error).startswith(f"{error.source}:{case.line}: ")


def test_missing_file_is_input_error(tmp_path: object) -> None:
    from farmsync.errors import InputError
    from farmsync.inventory.loader import load_inventory

    with pytest.raises(InputError, match="cannot read inventory"):
        load_inventory("/nonexistent/farm.yml", environ={})


def test_not_utf8_names_the_line(load_error: ErrorLoader, tmp_path: object) -> None:
    from pathlib import Path

    from farmsync.errors import InputError
    from farmsync.inventory.loader import load_inventory

    path = Path(str(tmp_path)) / "latin1.yml"
    path.write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    with pytest.raises(InputError) as caught:
        load_inventory(path, environ={})
    assert caught.value.line == 3
    assert "not UTF-8" in caught.value.message


def test_secret_value_never_in_error_message(load_error: ErrorLoader) -> None:
    error = load_error(
        """
        all:
          hosts:
            web01:
              ansible_password: "{{ vault_web_password_s3cr3t }}"
        """
    )
    assert "Jinja templates are not supported" in error.message
    assert "s3cr3t" not in str(error)


def test_secret_wrong_type_not_echoed(load_error: ErrorLoader) -> None:
    error = load_error(
        """
        all:
          hosts:
            web01:
              ansible_password: 918273645
        """
    )
    assert "expected a string" in error.message
    assert "918273645" not in str(error)
    assert error.line == 4
