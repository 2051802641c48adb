"""Every line farmsync prints is true: closing lines, keys named for what they are, AutoGenerate
per node, recover per host, tables that fit 80 columns. A farm of local hosts and real files."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console

from farmsync.cli.render import render_run, shorten_paths
from farmsync.orchestration.result import FileResult, Outcome, RunResult
from tests.cli.clikit import ANSI, CLI, LocalFarm, json_of, output_of, run_cli
from tests.cli.test_sshd_farm import ssh_vars
from tests.cli.test_terminal import run_in_pty
from tests.orchestration.farmkit import file_key
from tests.servers.sshd_fixtures import SshdTestNode

AUTOGENERATE_CONFIG = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <system.web>\n'
    b"  </system.web>\n</configuration>\n"
)


def headline(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.splitlines()[-1]


def test_a_limited_rotation_names_the_hosts_it_did_not_touch(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "-l", "web1")

    assert result.returncode == 0, output_of(result)
    line = headline(result)
    assert "every node" not in line
    assert line.startswith("done: the selected nodes hold the new key mk-"), line
    assert "not touched (--limit): web2, web3" in line and "farmsync sync" in line
    doc = json_of(local_farm.run("rotate", "-l", "!web3", "--json"))
    assert doc["left_out"] == ["web3"]


def test_rollback_calls_its_key_the_previous_key(local_farm: LocalFarm) -> None:
    first = json_of(local_farm.run("rotate", "--json"))["target_fingerprint"]
    assert local_farm.run("rotate").returncode == 0

    back = local_farm.run("rollback")

    assert back.returncode == 0, output_of(back)
    assert headline(back) == f"done: every node holds the previous key {first}"
    assert "new key" not in headline(back)


def test_check_does_not_show_a_key_the_real_run_will_not_use(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "--check")

    assert result.returncode == 0, output_of(result)
    assert headline(result) == (
        "check only: nothing was changed (a new key, generated when the run starts)"
    )
    fingerprints = set(re.findall(r"mk-[0-9a-f]{16}", result.stdout))
    assert fingerprints == set(local_farm.fingerprints().values())  # only the keys on the nodes
    doc = json_of(local_farm.run("rotate", "--check", "--json"))
    assert doc["target_fingerprint"] is None
    assert {f["new_fingerprint"] for h in doc["hosts"] for f in h["files"]} == {None}


def test_autogenerate_nodes_are_not_shown_as_sharing_one_key(local_farm: LocalFarm) -> None:
    for host in ("web1", "web2"):
        local_farm.configs[host].write_bytes(AUTOGENERATE_CONFIG)

    check = local_farm.run("rotate", "--check", "--json")
    text = local_farm.run("rotate", "--check")
    recover = local_farm.run("recover", "--json")

    assert "auto-" not in check.stdout + text.stdout + recover.stdout
    files = {h["host"]: h["files"][0] for h in json_of(check)["hosts"]}
    assert files["web1"]["old_fingerprint"] is None and files["web1"]["old_autogenerate"]
    assert files["web3"]["old_fingerprint"].startswith("mk-")
    rows = [line for line in text.stdout.splitlines() if "web1" in line or "web2" in line]
    assert rows and all("AutoGenerate" in row for row in rows), text.stdout
    (drift,) = [m for m in json_of(recover)["messages"] if "several keys" in m]
    assert "AutoGenerate (a key of its own per node) on web1, web2" in drift, drift


def test_a_missing_managed_file_says_missing_in_the_table(local_farm: LocalFarm) -> None:
    extra = local_farm.configs["web1"].parent / "Framework64" / "web.config"
    document = yaml.safe_load(local_farm.inventory.read_text())
    web1 = document["all"]["children"]["east"]["hosts"]["web1"]
    web1["farmsync_root_configs"].append(str(extra))
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    result = local_farm.run("rotate", "--check")

    assert result.returncode == 0, output_of(result)
    (row,) = [line for line in result.stdout.splitlines() if "Framework64" in line]
    assert "missing" in row, result.stdout


def test_recover_check_says_what_it_would_do_and_recover_what_it_did(
    local_farm: LocalFarm,
) -> None:
    rotated = local_farm.run("rotate", "--json")
    assert rotated.returncode == 0
    # A run whose controller died after staging: its journal has no end.
    journal = local_farm.farm_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    run_id = json_of(rotated)["run_id"]
    cut = max(i for i, line in enumerate(lines) if '"stage"' in line and run_id in line)
    journal.write_text("\n".join(lines[: cut + 1]) + "\n")

    check = local_farm.run("recover", "--check")

    assert check.returncode == 0, output_of(check)
    assert "no run left unfinished" not in check.stdout
    assert f"unfinished rotate run {run_id}: no commit was released" in check.stdout
    assert "would remove its staging files only" in check.stdout

    done = local_farm.run("recover", "--json")

    assert done.returncode == 0, output_of(done)
    doc = json_of(done)
    assert doc["outcome"] == "changed"
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {
        h: "cleaned-up" for h in local_farm.hosts
    }


def test_tables_fit_80_columns_without_cutting_fingerprints_or_run_ids() -> None:
    result = RunResult(
        "20261127T130734Z-9ef41a", "rotate", "contoso-web", Outcome.CHANGED, "mk-b183b69b77613352"
    )
    paths = [
        r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config",
        r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config",
    ]
    for name in ("web01.contoso.example", "web02.contoso.example"):
        host = result.host(name)
        host.status = "changed"
        for path in paths:
            host.files.append(
                FileResult(path, "changed", "mk-b7a06f1f257a0f3a", "mk-b183b69b77613352")
            )
    console = Console(width=80, force_terminal=True, no_color=True, record=True)
    render_run(result, console)
    text = console.export_text()

    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "20261127T130734Z-9ef41a" in text and "mk-b7a06f1f257a0f3a" in text
    assert "Framework64" in text and "\\Framework\\" in text  # the part that tells them apart
    short = shorten_paths(paths, 30)
    assert all(len(s) <= 30 for s in short.values()) and len(set(short.values())) == 2


def test_restore_check_shows_what_it_would_put_back_and_restore_says_whose(
    local_farm: LocalFarm,
) -> None:
    before = local_farm.fingerprints()
    rotated = json_of(local_farm.run("rotate", "--json"))
    run_id, key = rotated["run_id"], rotated["target_fingerprint"]
    files = local_farm.node_files()

    check = local_farm.run("restore", "--host", "web2", "--run", run_id, "--check", "--json")

    assert check.returncode == 0, output_of(check)
    assert local_farm.node_files() == files
    (host,) = json_of(check)["hosts"]
    (file,) = host["files"]
    assert host["host"] == "web2" and file["path"] == str(local_farm.configs["web2"])
    assert file["old_fingerprint"] == key and file["new_fingerprint"] == before["web2"]

    done = local_farm.run("restore", "--host", "web2", "--run", run_id)

    assert done.returncode == 0, output_of(done)
    assert headline(done) == (
        f"done: web2 is back on its files from before run {run_id} (the backups that run made)"
    )
    (warning,) = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert "mixed keys" in warning and "farmsync sync -l web2" in warning and key in warning


def test_restore_host_errors_name_the_host_option(local_farm: LocalFarm) -> None:
    result = local_farm.run("restore", "--host", "web9", "--run", "20261122T002101Z-6a223a")

    assert result.returncode == 2, output_of(result)
    (line,) = result.stderr.splitlines()
    assert "--host" in line and "--limit" not in line and "'web9'" in line
    assert "did you mean" in line


def test_relative_key_paths_are_relative_to_the_inventory_file(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]]
) -> None:
    (node,) = sshd_farm(1)
    keys = local_farm.inventory.parent / "keys"
    keys.mkdir()
    shutil.copy2(node.sshd.client_key_path, keys / "client_key")
    shutil.copy2(node.sshd.known_hosts_path, keys / "known_hosts")
    document = yaml.safe_load(local_farm.inventory.read_text())
    document["all"]["children"]["ssh"] = {
        "hosts": {
            "lin1": ssh_vars(
                node,
                ansible_ssh_private_key_file="keys/client_key",
                farmsync_known_hosts="keys/known_hosts",
            )
        }
    }
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    # Started from / (as cron does), not from the inventory's folder.
    result = run_cli("rotate", "-i", str(local_farm.inventory), env=local_farm.env(), cwd=Path("/"))

    assert result.returncode == 0, output_of(result)
    assert file_key(node.config).fingerprint().startswith("mk-")


def test_history_says_where_each_key_is_beside_its_vault_status(local_farm: LocalFarm) -> None:
    first = json_of(local_farm.run("rotate", "--json"))["target_fingerprint"]
    second = json_of(local_farm.run("rotate", "-l", "web1", "--json"))["target_fingerprint"]

    logged = json_of(local_farm.run("history", "--json"))
    live = json_of(local_farm.run("history", "--live", "--json"))
    text = local_farm.run("history")

    for doc in (logged, live):
        keys = {k["fingerprint"]: k for k in doc["keys"]}
        # The vault's statuses stay; where each key is comes beside them.
        assert keys[first]["status"] == "retired" and keys[second]["status"] == "active"
        assert keys[first]["on_nodes"] == ["web2", "web3"]
        assert keys[second]["on_nodes"] == ["web1"]
    assert json_of(local_farm.run("history", "--json"))["holdings"]["as_of"].startswith("run ")
    assert live["holdings"]["as_of"] == "now"
    rows = {
        line.split("│")[1].strip(): line for line in text.stdout.splitlines() if "│ mk-" in line
    }
    assert "2/3 nodes" in rows[first] and "1/3 nodes" in rows[second], text.stdout
    assert "on the farm: as of run " in text.stdout and "--live reads the nodes" in text.stdout


def test_history_explains_an_imported_key(local_farm: LocalFarm) -> None:
    shared = local_farm.originals["web1"]
    for path in local_farm.configs.values():
        path.write_bytes(shared)
    assert local_farm.run("rotate").returncode == 0

    text = local_farm.run("history")

    rows = [line for line in text.stdout.splitlines() if "imported" in line and "│" in line]
    assert len(rows) == 1, text.stdout
    assert "its creation time is its import time" in text.stdout


def test_the_table_names_the_kind_of_connection_failure(
    local_farm: LocalFarm, sshd_farm: Callable[..., list[SshdTestNode]], tmp_path: Path
) -> None:
    (node,) = sshd_farm(1)
    empty = tmp_path / "known_hosts_without_the_node"
    empty.write_text("")
    document = yaml.safe_load(local_farm.inventory.read_text())
    document["all"]["children"]["ssh"] = {
        "hosts": {"lin1": ssh_vars(node, farmsync_known_hosts=str(empty))}
    }
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    result = local_farm.run("rotate", env=local_farm.env(HOME=str(tmp_path)))

    assert result.returncode == 3, output_of(result)
    row = next(line for line in result.stdout.splitlines() if "│ lin1" in line)
    assert "host-key" in row and "unreachable" not in row, result.stdout
    others = [line for line in result.stdout.splitlines() if "web1" in line]
    assert others and "not-started" in others[0]


def test_history_fits_80_columns_on_a_terminal(local_farm: LocalFarm) -> None:
    rotated = json_of(local_farm.run("rotate", "--json"))
    env = local_farm.env(TERM="xterm-256color")

    code, screen = run_in_pty([*CLI, "history", "-i", str(local_farm.inventory)], env, cols=80)

    text = ANSI.sub("", screen)
    assert code == 0, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert rotated["target_fingerprint"] in text and rotated["run_id"] in text
