"""One farm, one history: the farm marker on the nodes stops a controller whose vault is behind
the farm (another state directory, an old copy of the vault, a renamed inventory) from
moving the farm backwards. Real sshd nodes beside local ones, two state directories."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from farmsync.orchestration.marker import read_marker
from tests.cli.clikit import LocalFarm, json_of, output_of
from tests.cli.test_sshd_farm import ssh_vars
from tests.orchestration.farmkit import file_key
from tests.servers.sshd_fixtures import SshdTestNode


def with_sshd_nodes(farm: LocalFarm, nodes: list[SshdTestNode]) -> dict[str, Path]:
    document = yaml.safe_load(farm.inventory.read_text())
    document["all"]["children"]["ssh"] = {
        "hosts": {f"lin{i}": ssh_vars(node) for i, node in enumerate(nodes, 1)}
    }
    farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    return {
        **farm.configs,
        **{f"lin{i}": node.config for i, node in enumerate(nodes, 1)},
    }


def contents(configs: dict[str, Path]) -> dict[str, bytes]:
    return {host: path.read_bytes() for host, path in configs.items()}


def test_a_second_state_directory_cannot_move_the_farm_backwards(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    configs = with_sshd_nodes(local_farm, sshd_farm(2))
    other_state = tmp_path / "other-state"
    first = local_farm.env()
    second = local_farm.env(FARMSYNC_STATE_DIR=str(other_state))

    rotated = local_farm.run("rotate", "--json", env=first)
    assert rotated.returncode == 0, output_of(rotated)
    a_vault = local_farm.farm_dir / "vault.fsv"
    # The first vault is new: the run says so, and where.
    assert f"created vault {a_vault} for farm" in " ".join(json_of(rotated)["messages"])
    rotated = local_farm.run("rotate", "--json", env=first)  # so that it has a previous key
    assert rotated.returncode == 0, output_of(rotated)
    assert not any("created vault" in m for m in json_of(rotated)["messages"])
    a_key = json_of(rotated)["target_fingerprint"]
    for host, path in configs.items():
        marker = read_marker(path.read_bytes(), host)
        assert marker is not None and marker.fingerprint == a_key and marker.generation == 2
        assert str(a_vault) in marker.vault

    # The second controller, with an empty state directory, refuses to rotate: exit 3,
    # naming the vault that wrote the farm's key and the option that points at it.
    before = contents(configs)
    refused = local_farm.run("rotate", env=second)
    assert refused.returncode == 3, output_of(refused)
    assert str(a_vault) in refused.stderr and "--state-dir" in refused.stderr
    assert a_key in refused.stderr and "--adopt" in refused.stderr
    assert contents(configs) == before
    assert "Traceback" not in refused.stderr
    # ... and leaves no empty vault of its own behind: a vault is written with its first key.
    assert not list(other_state.rglob("vault.fsv"))

    # It takes the farm over on purpose: a fresh key, the takeover recorded.
    adopted = local_farm.run("rotate", "--adopt", "--json", env=second)
    assert adopted.returncode == 0, output_of(adopted)
    b_key = json_of(adopted)["target_fingerprint"]
    assert b_key != a_key
    assert any("took the farm over from vault" in m for m in json_of(adopted)["messages"])
    history = local_farm.run("history", "--json", env=second)
    (taken,) = json_of(history)["takeovers"]
    assert taken["run_id"] == json_of(adopted)["run_id"] and str(a_vault) in taken["from_vault"]
    markers = {h: read_marker(p.read_bytes(), h) for h, p in configs.items()}
    assert {m.generation for m in markers.values() if m} == {3} and None not in markers.values()

    # Now the first controller is the one behind: sync, rollback and rotate all refuse with
    # exit 3 and leave every node byte for byte as it is (its sync would put a_key back).
    settled = contents(configs)
    for command in ("sync", "rollback", "rotate"):
        again = local_farm.run(command, env=first)
        assert again.returncode == 3, (command, output_of(again))
        assert "--state-dir" in again.stderr and str(other_state) in again.stderr, command
        assert contents(configs) == settled, command
    # recover reads the markers too, and says why this controller's runs would refuse.
    recovered = local_farm.run("recover", env=first)
    assert recovered.returncode == 0, output_of(recovered)
    assert "note: refusing to sync, rollback or rotate from here" in recovered.stdout
    assert contents(configs) == settled
    # Nothing staged or backed up by the refused runs either.
    for path in configs.values():
        assert not sorted(path.parent.glob("*.farmsync-*.new"))


def test_a_vault_restored_from_an_old_copy_is_behind_the_farm(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    configs = with_sshd_nodes(local_farm, sshd_farm(1))
    vault = local_farm.farm_dir / "vault.fsv"
    assert local_farm.run("rotate").returncode == 0
    old_copy = tmp_path / "vault.old"
    shutil.copy2(vault, old_copy)
    assert local_farm.run("rotate").returncode == 0
    shutil.copy2(old_copy, vault)  # the vault from before the second rotation
    before = contents(configs)

    result = local_farm.run("sync")

    assert result.returncode == 3, output_of(result)
    assert "behind the farm" in result.stderr and "generation 2" in result.stderr
    assert contents(configs) == before


def test_a_renamed_inventory_is_caught_by_the_marker(local_farm: LocalFarm) -> None:
    document = yaml.safe_load(local_farm.inventory.read_text())
    del document["all"]["vars"]["farmsync_farm"]  # the farm is named after the file
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    assert local_farm.run("rotate").returncode == 0
    renamed = local_farm.inventory.with_name("webfarm.yml")
    local_farm.inventory.rename(renamed)
    local_farm.inventory = renamed
    before = local_farm.contents()

    result = local_farm.run("rotate")

    assert result.returncode == 3, output_of(result)
    assert "managed as farm 'farm'" in result.stderr and "renamed" in result.stderr
    assert "farmsync_farm: farm" in result.stderr
    assert local_farm.contents() == before


def test_another_controllers_staged_run_is_named_and_cleared_only_on_purpose(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    configs = with_sshd_nodes(local_farm, sshd_farm(1))
    other_run = "20261127T000000Z-0dead0"
    planted = [
        path.with_name(f"{path.name}.farmsync-{other_run}.new")
        for path in (configs["lin1"], configs["web2"])
    ]
    for path in planted:  # what a controller that died after staging leaves behind
        path.write_bytes(b"staged by another controller\n")
    before = contents(configs)

    refused = local_farm.run("rotate")

    assert refused.returncode == 3, output_of(refused)
    (line,) = refused.stderr.splitlines()[-1:]
    assert f"run {other_run} on lin1, web2" in line and f"--clear-staged {other_run}" in line
    assert contents(configs) == before and all(p.exists() for p in planted)

    recover = local_farm.run("recover")
    assert recover.returncode == 0, output_of(recover)
    assert f"lin1: run {other_run} is staged here" in recover.stdout
    assert all(p.exists() for p in planted)

    cleared = local_farm.run("rotate", "--clear-staged", other_run)

    assert cleared.returncode == 0, output_of(cleared)
    assert not any(p.exists() for p in planted)
    assert f"lin1: removed the staging files of run {other_run}" in cleared.stdout
    assert len({file_key(p).fingerprint() for p in configs.values()}) == 1
