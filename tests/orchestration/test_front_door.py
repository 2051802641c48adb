"""The README's "From Python" lines, run as they are written, against a farm of real sshd nodes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync import AuditOptions, Farm, InputError, VaultError, VaultSecret
from tests.orchestration.farmkit import TestFarm

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README's From Python section has no python block"
    return match.group(1)


def test_the_readme_rotates_a_farm_from_python_in_five_lines(
    make_farm: Callable[..., TestFarm],
) -> None:
    code = readme_python()
    assert len(code.splitlines()) == 5
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    assert farm.inventory_path == farm.root / "farm.yml"  # the name the README uses

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=farm.root,
        env={**os.environ, **farm.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    outcome, fingerprint, exit_code = done.stdout.split()
    assert (outcome, exit_code) == ("changed", "0")
    keys = farm.fingerprints()
    assert keys["web1"] == keys["web2"] == fingerprint  # limit="web*"
    assert farm.configs["iis1"].read_bytes() == farm.originals["iis1"]


EXAMPLE_ENV = {"FARMSYNC_WINRM_PASSWORD": "not-a-real-password"}


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example beside the CA file it names, as a user has it (nothing contacted)."""
    copy = tmp_path / "example" / "example.yml"
    copy.parent.mkdir()
    copy.write_bytes((README.parent / "inventory" / "example.yml").read_bytes())
    copy.with_name("contoso-root-ca.pem").write_text("not a real CA: only its presence counts\n")
    return copy


def test_open_checks_the_inventory_and_the_limit_and_contacts_nothing(
    example: Path, tmp_path: Path
) -> None:
    farm = Farm.open(example, limit="web_east", state_dir=tmp_path, environ=EXAMPLE_ENV)

    assert [h.name for h in farm.ctx.hosts] == ["web01.contoso.example", "web02.contoso.example"]
    assert farm.ctx.state.farm_dir == tmp_path / "contoso-web"
    assert not farm.ctx.state.farm_dir.exists()  # nothing created before a command runs
    with pytest.raises(InputError) as bad_limit:
        Farm.open(example, limit="web_north", environ=EXAMPLE_ENV)
    assert bad_limit.value.exit_code == 2
    with pytest.raises(InputError) as bad_inventory:
        Farm.open(example, environ={})  # the password variable it names is not set
    assert bad_inventory.value.source == str(example)
    example.with_name("contoso-root-ca.pem").unlink()
    with pytest.raises(InputError) as missing_ca:
        Farm.open(example, environ=EXAMPLE_ENV)
    assert "contoso-root-ca.pem does not exist on this controller" in missing_ca.value.message


def test_the_vault_secret_is_read_when_a_command_needs_it(example: Path) -> None:
    given = VaultSecret.from_passphrase("given")
    assert Farm.open(example, secret=given, environ=EXAMPLE_ENV).ctx.vault_secret() is given
    from_env = Farm.open(
        example, environ={**EXAMPLE_ENV, "FARMSYNC_VAULT_PASSPHRASE": "from the environment"}
    )
    assert from_env.ctx.vault_secret().reveal() == b"from the environment"
    # No secret anywhere: opening the farm works; only reading the secret fails.
    farm = Farm.open(example, environ=EXAMPLE_ENV)
    with pytest.raises(VaultError) as missing:
        farm.ctx.vault_secret()
    assert missing.value.exit_code == 2


def test_audit_through_the_front_door_sees_the_keys_a_rotation_left(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)

    before = farm.open().audit()
    rotated = farm.open().rotate()
    after = farm.open().audit(AuditOptions(forks=1))

    assert [n.host for n in before.model.nodes] == ["web1", "web2"]
    assert len(before.key_groups()) == 2  # each node on its own hand-made key
    assert [g.fingerprint for g in after.key_groups()] == [rotated.target_fingerprint]
    assert all(n.reachable for n in after.model.nodes)
