"""``farmsync rotate`` and friends on a farm of local hosts: what lands in the files, and what the
user sees on stdout, stderr and in ``--json``."""

from __future__ import annotations

import re

from tests.cli.clikit import ANSI, LocalFarm, error_lines, json_of, output_of

# Not a terminal (a log): each event line starts with its UTC time.
EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    r"\[(\w+)\] (?:\d+ host\(s\)|(\S+): (ok|failed|skipped)(?: .*)?)$"
)
CHANGING_PHASES = ("connect", "read", "stage", "arm", "commit", "verify")


def test_rotate_puts_one_new_key_everywhere_then_sync_has_nothing_to_do(
    local_farm: LocalFarm,
) -> None:
    before = local_farm.fingerprints()

    result = local_farm.run("rotate")

    assert result.returncode == 0, output_of(result)
    after = local_farm.fingerprints()
    (target,) = set(after.values())
    assert target.startswith("mk-") and target not in before.values()
    current = local_farm.vault().current()
    assert current is not None and current.fingerprint == target
    # Not a terminal: no colour codes, one line per event on stderr.
    assert not ANSI.search(result.stdout) and not ANSI.search(result.stderr)
    events = [EVENT_LINE.match(line) for line in result.stderr.splitlines()]
    assert all(events), output_of(result)
    for phase in CHANGING_PHASES:
        oks = sorted(m[2] for m in events if m and m[1] == phase and m[3] == "ok")
        assert oks == sorted(local_farm.hosts), (phase, result.stderr)
    # A table on stdout: every host on a row marked changed, then the headline with the key.
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for host in local_farm.hosts:
        assert "changed" in rows[host]
    headline = result.stdout.splitlines()[-1]
    assert headline.startswith("done: every node holds the new key") and target in headline

    rotated = local_farm.node_files()
    again = local_farm.run("sync")

    assert again.returncode == 0, output_of(again)
    assert "nothing to do" in again.stdout
    assert local_farm.node_files() == rotated  # byte-identical, no new backup or staging file


def test_rotate_json_reports_every_host_old_and_new_fingerprints(local_farm: LocalFarm) -> None:
    before = local_farm.fingerprints()

    result = local_farm.run("rotate", "--json")

    assert result.returncode == 0, output_of(result)
    assert result.stderr == ""  # --json is quiet: no progress lines
    doc = json_of(result)
    assert doc["outcome"] == "changed" and doc["exit_code"] == 0
    assert doc["kind"] == "rotate" and doc["farm"] == "clifarm" and doc["run_id"]
    target = doc["target_fingerprint"]
    assert set(local_farm.fingerprints().values()) == {target}
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert set(hosts) == set(local_farm.hosts)
    for name, host in hosts.items():
        assert host["status"] == "changed" and host["error"] is None
        (file,) = host["files"]
        assert file["path"] == str(local_farm.configs[name])
        assert file["old_fingerprint"] == before[name]
        assert file["new_fingerprint"] == target
        assert file["diff"] is None


def test_check_with_diff_writes_nothing_and_shows_masked_machinekey_lines(
    local_farm: LocalFarm,
) -> None:
    files = local_farm.node_files()

    result = local_farm.run("rotate", "--check", "--diff")

    assert result.returncode == 0, output_of(result)
    assert local_farm.node_files() == files
    assert "check only: nothing was changed" in result.stdout
    headers = [line for line in result.stdout.splitlines() if line.startswith("--- ")]
    for host, path in local_farm.configs.items():
        assert any(f"{host}:{path}" in line for line in headers), headers
    removed = [line for line in result.stdout.splitlines() if line.startswith("-    <machineKey")]
    added = [line for line in result.stdout.splitlines() if line.startswith("+    <machineKey")]
    assert len(removed) == len(added) == len(local_farm.hosts)
    for line in removed + added:
        assert re.search(r'validationKey="[^"]*masked[^"]*"', line), line
        assert re.search(r'decryptionKey="[^"]*masked[^"]*"', line), line
        assert not re.search(r"[0-9A-Fa-f]{32}", line), line


def test_check_on_a_new_farm_creates_no_vault(local_farm: LocalFarm) -> None:
    # A vault sealed by a dry run would bind the farm to whatever passphrase it was given.
    result = local_farm.run("rotate", "--check")
    assert result.returncode == 0, output_of(result)
    assert not (local_farm.farm_dir / "vault.fsv").exists()


def test_limit_with_group_and_host_touches_only_those_hosts(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "--limit", "west:web1", "--json")

    assert result.returncode == 0, output_of(result)
    doc = json_of(result)
    assert sorted(h["host"] for h in doc["hosts"]) == ["web1", "web3"]
    after = local_farm.fingerprints()
    assert after["web1"] == after["web3"] == doc["target_fingerprint"]
    assert local_farm.configs["web2"].read_bytes() == local_farm.originals["web2"]
    assert local_farm.backups("web2") == []


def test_limit_matching_nothing_is_bad_input(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "--limit", "south")

    assert result.returncode == 2, output_of(result)
    lines = error_lines(result)
    assert len(lines) == 1 and "--limit" in lines[0] and "'south'" in lines[0], lines
    assert local_farm.contents() == local_farm.originals
    assert not local_farm.state_root.exists()


def test_if_older_than_then_rollback_then_history(local_farm: LocalFarm) -> None:
    first = local_farm.run("rotate", "--json")
    assert first.returncode == 0, output_of(first)
    key1 = json_of(first)["target_fingerprint"]
    files = local_farm.node_files()

    young = local_farm.run("rotate", "--if-older-than", "1d")

    assert young.returncode == 0, output_of(young)
    assert "nothing to do" in young.stdout
    assert local_farm.node_files() == files

    second = local_farm.run("rotate", "--json")
    assert second.returncode == 0, output_of(second)
    key2 = json_of(second)["target_fingerprint"]
    assert key2 != key1

    back = local_farm.run("rollback")

    assert back.returncode == 0, output_of(back)
    assert set(local_farm.fingerprints().values()) == {key1}

    history = local_farm.run("history", "--json")
    assert history.returncode == 0, output_of(history)
    doc = json_of(history)
    assert doc["farm"] == "clifarm"
    statuses = {k["fingerprint"]: k["status"] for k in doc["keys"]}
    assert statuses == {key1: "active", key2: "retired"}
    for key in doc["keys"]:
        assert "key" not in key and "validationKey" not in key
    assert not re.search(r"[0-9A-Fa-f]{32}", history.stdout)


def test_restore_puts_one_runs_backup_back_on_one_host_only(local_farm: LocalFarm) -> None:
    rotated = local_farm.run("rotate", "--json")
    assert rotated.returncode == 0, output_of(rotated)
    run_id = json_of(rotated)["run_id"]
    after_rotate = local_farm.contents()

    result = local_farm.run("restore", "--host", "web2", "--run", run_id)

    assert result.returncode == 0, output_of(result)
    now = local_farm.contents()
    assert now["web2"] == local_farm.originals["web2"]
    assert now["web1"] == after_rotate["web1"] and now["web3"] == after_rotate["web3"]
