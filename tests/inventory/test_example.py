"""The shipped inventory/example.yml, `inventory check` data, and the README variable table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.inventory import (
    describe_inventory,
    load_inventory,
    variables_reference_markdown,
)
from farmsync.inventory.model import Shell, Transport
from farmsync.inventory.variables import VARIABLES

from .conftest import Loader

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example.yml"
README = Path(__file__).resolve().parents[2] / "README.md"
ENV = {"FARMSYNC_WINRM_PASSWORD": "example-password"}
ROOTS = (
    r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config",
    r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",
)


def test_example_is_a_valid_four_node_windows_farm() -> None:
    inventory = load_inventory(EXAMPLE, environ=ENV)
    assert inventory.warnings == ()
    assert inventory.farm == "contoso-web"
    assert len(inventory.hosts) == 4
    assert inventory.groups["web_east"] == ("web01.contoso.example", "web02.contoso.example")
    assert inventory.groups["web_west"] == ("web03.contoso.example", "web04.contoso.example")
    assert inventory.groups["farm"] == tuple(inventory.hosts)
    for host in inventory.hosts.values():
        assert host.name.endswith(".contoso.example")
        assert (host.transport, host.shell, host.port) == (Transport.WINRM, Shell.POWERSHELL, 5986)
        assert host.winrm.scheme == "https" and host.winrm.cert_validation
        assert host.root_configs == ROOTS
        assert host.password is not None and host.password.reveal() == "example-password"
    assert inventory.hosts["web04.contoso.example"].address == "10.20.0.14"
    assert inventory.hosts["web03.contoso.example"].timeout == 120.0
    assert inventory.hosts["web01.contoso.example"].timeout == 60.0


def test_example_without_its_password_variable_names_the_line() -> None:
    line = next(
        i
        for i, text in enumerate(EXAMPLE.read_text().splitlines(), start=1)
        if text.strip().startswith("farmsync_password_env:")
    )
    with pytest.raises(InputError) as caught:
        load_inventory(EXAMPLE, environ={})
    assert caught.value.line == line
    assert "FARMSYNC_WINRM_PASSWORD" in caught.value.message


def test_describe_example() -> None:
    summaries = describe_inventory(load_inventory(EXAMPLE, environ=ENV))
    assert [s.name for s in summaries] == [f"web0{i}.contoso.example" for i in range(1, 5)]
    first = summaries[0].to_dict()
    assert first == {
        "name": "web01.contoso.example",
        "groups": ["farm", "web_east"],
        "transport": "winrm",
        "address": "web01.contoso.example:5986",
        "shell": "powershell",
        "user": "CONTOSO\\svc-farmsync",
        "root_configs": list(ROOTS),
        "app_configs": [
            "C:\\inetpub\\wwwroot\\shop\\web.config",
            "C:\\inetpub\\wwwroot\\account\\web.config",
        ],
        "recycle": "iis: ShopPool, AccountPool",
        "password_source": "env:FARMSYNC_WINRM_PASSWORD",
        "source_line": first["source_line"],
        # The CA file is relative to the inventory, resolved when it is loaded.
        "trust": f"TLS certificate checked against {EXAMPLE.parent / 'contoso-root-ca.pem'}",
        "notes": [],
    }
    assert summaries[3].address == "10.20.0.14:5986"
    assert "example-password" not in repr(summaries)


def test_describe_password_sources_and_addresses(load: Loader) -> None:
    inventory = load(
        """
        all:
          vars:
            ansible_connection: winrm
            ansible_user: u
          hosts:
            plain: {ansible_password: Hunter2-plain}
            lookup:
              ansible_password: "{{ lookup('env', 'LOOKUP_PW') }}"
            kerb: {ansible_winrm_transport: kerberos, ansible_host: "fd00::9"}
            lab:
              ansible_connection: local
              farmsync_root_configs: [/srv/lab/web.config]
              farmsync_recycle: {command: "touch /srv/lab/restart"}
        """,
        env={"LOOKUP_PW": "x"},
    )
    summaries = {s.name: s for s in describe_inventory(inventory)}
    assert summaries["plain"].password_source == "plaintext"
    assert summaries["lookup"].password_source == "env:LOOKUP_PW"
    assert summaries["kerb"].password_source == "none"
    assert summaries["kerb"].address == "[fd00::9]:5986"
    assert summaries["lab"].address == "local"
    assert summaries["lab"].recycle == "command: touch /srv/lab/restart"
    assert "Hunter2-plain" not in repr(list(summaries.values()))


def test_reference_lists_every_variable() -> None:
    markdown = variables_reference_markdown()
    for name in VARIABLES:
        assert f"| `{name}` |" in markdown
    assert markdown.count("\n| `") == len(VARIABLES)


def test_readme_holds_the_generated_reference_as_it_is_generated() -> None:
    readme = README.read_text()
    generated = variables_reference_markdown().strip()
    assert generated in readme, "README's variable table drifted: paste the generated one"
    # And only once, with no hand-written variable rows beside it.
    header = generated.splitlines()[0]
    table = readme[readme.index(header) :].split("\n\n", 1)[0]
    assert table == generated.split("\n\n", 1)[0]


def test_example_documents_only_known_farmsync_variables() -> None:
    text = EXAMPLE.read_text()
    used = set(re.findall(r"\bfarmsync_[a-z_]*[a-z]", text))
    assert used - set(VARIABLES) == set()
