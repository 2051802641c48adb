"""``farmsync inventory check`` on the shipped example, and bad inventories refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.clikit import ANSI, CLI, PASSPHRASE, base_env, error_lines, output_of, run_cli
from tests.cli.test_terminal import run_in_pty

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example.yml"
PASSWORD_ENV = "FARMSYNC_WINRM_PASSWORD"
WINDOWS_ROOTS = [
    r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config",
    r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",
]
ADDRESSES = {
    "web01.contoso.example": "web01.contoso.example:5986",
    "web02.contoso.example": "web02.contoso.example:5986",
    "web03.contoso.example": "web03.contoso.example:5986",
    "web04.contoso.example": "10.20.0.14:5986",
}


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.fixture(autouse=True)
def example_with_its_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example beside the CA file it names (relative to the inventory), as a user has it."""
    global EXAMPLE_COPY
    EXAMPLE_COPY = tmp_path_factory.mktemp("example") / "example.yml"
    EXAMPLE_COPY.write_bytes(EXAMPLE.read_bytes())
    ca = EXAMPLE_COPY.with_name("contoso-root-ca.pem")
    ca.write_text("not a real CA: the check only wants a file\n")
    return EXAMPLE_COPY


EXAMPLE_COPY = EXAMPLE


def check(*args: str, columns: int | None = None) -> tuple[int, str, str]:
    extra = {PASSWORD_ENV: "not-a-real-password"}
    if columns is not None:
        extra["COLUMNS"] = str(columns)
    result = run_cli("inventory", "check", "-i", str(EXAMPLE_COPY), *args, env=base_env(extra))
    return result.returncode, result.stdout, result.stderr


def test_inventory_check_names_a_missing_file_and_does_not_call_the_inventory_valid(
    example_with_its_ca: Path,
) -> None:
    ca = example_with_its_ca.with_name("contoso-root-ca.pem")
    ca.unlink()

    code, out, err = check()

    assert code == 2, out + err
    assert "is valid" not in out and "not ready" in out
    assert f"ansible_winrm_ca_trust_path {ca} does not exist" in err
    # The same inventory is refused by a farm command before anything is contacted.
    rotate = run_cli(
        "rotate",
        "-i",
        str(EXAMPLE_COPY),
        env=base_env({PASSWORD_ENV: "x", "FARMSYNC_VAULT_PASSPHRASE": "p"}),
    )
    assert rotate.returncode == 2, output_of(rotate)
    (line,) = error_lines(rotate)
    assert "contoso-root-ca.pem does not exist on this controller" in line, line


def test_inventory_check_shows_the_policy_and_application_configs() -> None:
    code, out, err = check(columns=300)
    assert code == 0, err
    assert "key policy: validation=HMACSHA256, decryption=AES" in out
    assert "C:\\inetpub\\wwwroot\\shop\\web.config" in out
    code, out, err = check("--json")
    doc = json.loads(out)
    assert doc["policy"]["validation"] == "HMACSHA256" and doc["missing_files"] == []
    assert any(h["app_configs"] for h in doc["hosts"])


def test_example_lists_every_host_with_transport_address_and_root_configs() -> None:
    code, out, err = check(columns=250)
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if ".contoso." in line}
    assert set(rows) == set(ADDRESSES)
    for host, address in ADDRESSES.items():
        assert "winrm/powershell" in rows[host]
        assert address in rows[host]
        assert WINDOWS_ROOTS[0] in rows[host]
    # The second root config of each host is on the row below it.
    assert out.count(WINDOWS_ROOTS[1]) == len(ADDRESSES)
    assert f"ok: {EXAMPLE_COPY} is valid" in out
    assert "not-a-real-password" not in out + err


def test_example_output_piped_keeps_host_names_and_paths_whole() -> None:
    code, out, err = check()
    assert code == 0, err
    for host, address in ADDRESSES.items():
        assert host in out and address in out
    assert WINDOWS_ROOTS[1] in out


def test_example_json_shape() -> None:
    code, out, err = check("--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["farm"] == "contoso-web"
    assert doc["inventory"] == str(EXAMPLE_COPY)
    assert isinstance(doc["warnings"], list)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == set(ADDRESSES)
    for name, host in hosts.items():
        assert host["transport"] == "winrm"
        assert host["shell"] == "powershell"
        assert host["address"] == ADDRESSES[name]
        assert host["root_configs"] == WINDOWS_ROOTS
        assert host["password_source"] == f"env:{PASSWORD_ENV}"
        assert "farm" in host["groups"]
    assert hosts["web03.contoso.example"]["groups"] == ["farm", "web_west"]


def test_example_without_its_password_variable_is_one_error_naming_file_and_line() -> None:
    result = run_cli("inventory", "check", "-i", str(EXAMPLE), env=base_env())
    assert result.returncode == 2, output_of(result)
    assert result.stdout == ""
    lines = error_lines(result)
    assert len(lines) == 1, output_of(result)
    where = f"{EXAMPLE}:{line_of(EXAMPLE, 'farmsync_password_env:')}:"
    assert where in lines[0]
    assert PASSWORD_ENV in lines[0]


# Each bad inventory, and the line its error must point at.
BAD_INVENTORIES = {
    "yaml-syntax": ("all:\n  hosts:\n    a: {ansible_connection: local\n    b:\n", 4),
    "unknown-transport": (
        "all:\n  vars:\n    farmsync_farm: f\n  hosts:\n    a:\n      ansible_connection: psrp\n",
        6,
    ),
    "duplicate-host": (
        "all:\n  vars:\n    farmsync_farm: f\n  children:\n"
        "    g1:\n      hosts:\n        a:\n          ansible_connection: local\n"
        "    g2:\n      hosts:\n        b:\n          ansible_connection: local\n"
        "  hosts:\n    a:\n      ansible_connection: local\n    a:\n"
        "      ansible_connection: local\n",
        16,
    ),
    "wrong-type": (
        "all:\n  vars:\n    farmsync_farm: f\n  hosts:\n    a:\n      ansible_connection: local\n"
        "      farmsync_timeout: soon\n",
        7,
    ),
    "unknown-variable": (
        "all:\n  vars:\n    farmsync_farm: f\n  hosts:\n    a:\n      ansible_connection: local\n"
        "      farmsync_rootconfigs: [/srv/web.config]\n",
        7,
    ),
    "empty-farm": ("all:\n  vars:\n    farmsync_farm: f\n", 1),
}
WORDS = {
    "yaml-syntax": "YAML",
    "unknown-transport": "psrp",
    "duplicate-host": "duplicate host 'a'",
    "wrong-type": "farmsync_timeout",
    "unknown-variable": "farmsync_rootconfigs",
    "empty-farm": "no hosts",
}


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_is_one_error_naming_file_and_line_and_writes_nothing(
    case: str, tmp_path: Path
) -> None:
    text, line = BAD_INVENTORIES[case]
    inventory = tmp_path / "inventory" / f"{case}.yml"
    inventory.parent.mkdir()
    inventory.write_text(text)
    state = tmp_path / "state"
    env = base_env({"FARMSYNC_STATE_DIR": str(state), "FARMSYNC_VAULT_PASSPHRASE": PASSPHRASE})

    result = run_cli("rotate", "-i", str(inventory), env=env)

    assert result.returncode == 2, output_of(result)
    lines = error_lines(result)
    assert len(lines) == 1, output_of(result)
    assert lines[0].startswith(f"farmsync: error: {inventory}:{line}: "), lines[0]
    assert WORDS[case] in lines[0]
    assert result.stdout == ""
    assert not state.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        Path("inventory"),
        inventory.relative_to(tmp_path),
    ]


def test_on_an_80_column_terminal_nothing_is_cut() -> None:
    env = base_env({PASSWORD_ENV: "x", "TERM": "xterm-256color"})

    code, screen = run_in_pty([*CLI, "inventory", "check", "-i", str(EXAMPLE_COPY)], env, cols=80)

    text = ANSI.sub("", screen)
    assert code == 0, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for host in ADDRESSES:
        assert host in text
    assert all(root in text for root in WINDOWS_ROOTS)
