"""Outcomes the happy path never shows: a recycle that fails, and ``rotate --if-due``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.cli.clikit import LocalFarm, error_lines, json_of, make_local_farm, output_of


def test_a_failed_recycle_keeps_the_new_key_and_ends_recycle_failed(tmp_path: Path) -> None:
    marker = tmp_path / "web1-recycled"
    farm = make_local_farm(
        tmp_path,
        host_vars={
            "web1": {"farmsync_recycle": {"command": f"touch {marker}"}},
            "web2": {"farmsync_recycle": {"command": "echo pool busy >&2; exit 7"}},
        },
    )

    result = farm.run("rotate", "--json")

    assert result.returncode == 1, output_of(result)
    doc = json_of(result)
    assert doc["outcome"] == "recycle-failed" and doc["exit_code"] == 1
    # The keys are consistent: every node holds the new one, and the vault calls it active.
    target = doc["target_fingerprint"]
    assert set(farm.fingerprints().values()) == {target}
    current = farm.vault().current()
    assert current is not None and current.fingerprint == target
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert {n: h["status"] for n, h in hosts.items()} == {n: "changed" for n in farm.hosts}
    assert {n: h["recycled"] for n, h in hosts.items()} == {
        "web1": True,
        "web2": False,
        "web3": False,  # nothing to recycle there
    }
    assert marker.exists()
    assert any(m.startswith("web2: recycle failed") for m in doc["messages"]), doc["messages"]

    plain = farm.run("sync")  # nothing to change, nothing recycled: exit 0 again
    assert plain.returncode == 0, output_of(plain)


def set_max_key_age(farm: LocalFarm, age: str | None) -> None:
    doc: dict[str, Any] = yaml.safe_load(farm.inventory.read_text())
    variables = doc["all"]["vars"]
    if age is None:
        variables.pop("farmsync_policy", None)
    else:
        variables["farmsync_policy"] = {"validation": "HMACSHA256", "max_key_age": age}
    farm.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_rotate_if_due_rotates_only_once_the_policy_age_is_reached(local_farm: LocalFarm) -> None:
    set_max_key_age(local_farm, "1h")

    first = local_farm.run("rotate", "--if-due", "--json")  # no key yet: due
    assert first.returncode == 0, output_of(first)
    target = json_of(first)["target_fingerprint"]
    assert json_of(first)["outcome"] == "changed"
    rotated = local_farm.node_files()

    young = local_farm.run("rotate", "--if-due")

    assert young.returncode == 0, output_of(young)
    assert f"current key {target} is " in young.stdout
    assert "younger than 1h: nothing to do" in young.stdout
    assert local_farm.node_files() == rotated

    # A policy whose age the key has passed: wait until the key is older than one second by
    # the vault's own record (a wait for the clock, not a timing assertion).
    set_max_key_age(local_farm, "1s")
    current = local_farm.vault().current()
    assert current is not None and current.activated_at is not None
    activated = datetime.fromisoformat(current.activated_at)
    time.sleep(max(0.0, (activated + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))

    due = local_farm.run("rotate", "--if-due", "--json")

    assert due.returncode == 0, output_of(due)
    assert json_of(due)["outcome"] == "changed"
    assert set(local_farm.fingerprints().values()) == {json_of(due)["target_fingerprint"]}
    assert json_of(due)["target_fingerprint"] != target


def test_rotate_if_due_without_a_max_key_age_is_bad_input(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "--if-due")

    assert result.returncode == 2, output_of(result)
    assert result.stdout == ""
    assert error_lines(result) == [
        f"farmsync: error: {local_farm.inventory}: --if-due needs farmsync_policy.max_key_age "
        "in the inventory"
    ]
    assert local_farm.contents() == local_farm.originals
    assert not (local_farm.farm_dir / "vault.fsv").exists()
