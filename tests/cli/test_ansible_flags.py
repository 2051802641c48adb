"""The everyday flags an Ansible user reaches for: -v/-q, --no-color/NO_COLOR, timestamps in
logs, --help that names the environment, --wait on the lock, several -i, did-you-mean."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.clikit import CLI, FARM, LocalFarm, base_env, make_local_farm, output_of, run_cli
from tests.cli.test_refusals import HOLDER
from tests.cli.test_terminal import run_in_pty

COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m")


def test_quiet_prints_only_the_closing_line(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "-q")

    assert result.returncode == 0, output_of(result)
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("done: every node holds the new key mk-")


def test_verbose_before_or_after_the_command_adds_phase_timings(local_farm: LocalFarm) -> None:
    after = local_farm.run("rotate", "-v")
    before = run_cli("-v", "sync", "-i", str(local_farm.inventory), env=local_farm.env())

    assert after.returncode == 0, output_of(after)
    assert re.search(r"^phases: read [\d.]+ ms, plan [\d.]+ ms, stage", after.stdout, re.M)
    assert before.returncode == 0, output_of(before)
    assert "nothing to do" in before.stdout


@pytest.mark.parametrize("how", ["--no-color", "NO_COLOR"])
def test_no_colour_on_a_terminal(local_farm: LocalFarm, how: str) -> None:
    env = local_farm.env(TERM="xterm-256color")
    args = [*CLI, "rotate", "-i", str(local_farm.inventory)]
    if how == "NO_COLOR":
        env["NO_COLOR"] = "1"
    else:
        args.append("--no-color")
    plain_code, plain = run_in_pty(args, env)
    coloured_code, coloured = run_in_pty(
        [*CLI, "sync", "-i", str(local_farm.inventory)], local_farm.env(TERM="xterm-256color")
    )

    assert plain_code == 0 and coloured_code == 0, plain
    assert COLOUR.search(coloured), "the control run shows colour"
    assert not COLOUR.search(plain), plain


def hold_lock(farm: LocalFarm) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(farm.state_root), FARM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=base_env(),
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(10)


def test_wait_waits_for_the_lock_then_runs(local_farm: LocalFarm) -> None:
    holder = hold_lock(local_farm)
    proc = subprocess.Popen(
        [*CLI, "rotate", "--wait", "60", "-i", str(local_farm.inventory)],
        env=local_farm.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        waiting = proc.stderr.readline()
        assert "[lock] -: info waiting up to 60s" in waiting and "R-HOLDER" in waiting, waiting
        assert local_farm.contents() == local_farm.originals  # it has not started
        release(holder)
        out, err = proc.communicate(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert len(set(local_farm.fingerprints().values())) == 1


def test_ctrl_c_while_waiting_for_the_lock_exits_130_without_a_traceback(
    local_farm: LocalFarm,
) -> None:
    holder = hold_lock(local_farm)
    proc = subprocess.Popen(
        [*CLI, "rotate", "--wait", "60", "-i", str(local_farm.inventory)],
        env=local_farm.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "waiting up to 60s" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        release(holder)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Aborted" not in err
    assert "farmsync: interrupted" in err
    assert local_farm.contents() == local_farm.originals


def test_without_wait_a_held_lock_is_refused_at_once(local_farm: LocalFarm) -> None:
    holder = hold_lock(local_farm)
    try:
        result = local_farm.run("rotate", "--wait", "0.3")
    finally:
        release(holder)
    assert result.returncode == 3, output_of(result)
    assert "is locked by pid" in result.stderr


def test_several_inventories_are_refused_naming_them(local_farm: LocalFarm, tmp_path: Path) -> None:
    other = tmp_path / "other.yml"
    other.write_bytes(local_farm.inventory.read_bytes())

    result = run_cli(
        "rotate", "-i", str(local_farm.inventory), "-i", str(other), env=local_farm.env()
    )

    assert result.returncode == 2, output_of(result)
    (line,) = result.stderr.splitlines()
    assert str(other) in line and "does not merge inventories" in line
    assert local_farm.contents() == local_farm.originals


def test_usage_errors_are_one_line(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "--forks", "0")

    assert result.returncode == 2, output_of(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith("farmsync: error: ") and "--forks" in line and "--help" in line


def test_a_pattern_matching_nothing_suggests_a_host(local_farm: LocalFarm) -> None:
    result = local_farm.run("rotate", "-l", "wbe1")

    assert result.returncode == 2, output_of(result)
    assert "did you mean web1?" in result.stderr


def test_an_ansible_name_typo_is_warned_about(local_farm: LocalFarm) -> None:
    document = yaml.safe_load(local_farm.inventory.read_text())
    document["all"]["children"]["east"]["hosts"]["web1"]["ansible_conection"] = "local"
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    check = run_cli("inventory", "check", "-i", str(local_farm.inventory), env=local_farm.env())
    rotate = local_farm.run("rotate", "--check")

    for result in (check, rotate):
        assert "'ansible_conection' is not a variable farmsync reads" in result.stderr
        assert "did you mean 'ansible_connection'?" in result.stderr


def test_help_names_the_environment_and_the_default_state_directory() -> None:
    for command in ("rotate", "sync", "rollback", "recover", "restore", "history"):
        result = run_cli(command, "--help", env=base_env())
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        for name in ("FARMSYNC_STATE_DIR", "FARMSYNC_VAULT_PASSPHRASE", "FARMSYNC_VAULT_KEY_FILE"):
            assert name in text, (command, name)
        assert "~/.local/state/farmsync" in text, command


def test_shell_completion_scripts_are_generated() -> None:
    for shell in ("bash", "zsh", "fish"):
        result = run_cli(env=base_env({"_FARMSYNC_COMPLETE": f"{shell}_source"}))
        assert result.returncode == 0, output_of(result)
        assert "_FARMSYNC_COMPLETE" in result.stdout, shell


def test_ctrl_c_mid_run_through_the_command_line_is_a_decision_not_aborted(
    tmp_path: Path,
) -> None:
    # web1's recycle sends SIGINT to farmsync itself (its parent): a Ctrl-C that arrives after
    # every node was committed and verified, at a known point, through the real entry point.
    farm = make_local_farm(
        tmp_path, host_vars={"web1": {"farmsync_recycle": {"command": "kill -INT $PPID"}}}
    )

    result = farm.run("rotate", "--json")

    assert result.returncode == 130, output_of(result)
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["interrupted"] == "SIGINT" and doc["exit_code"] == 130
    (said,) = [m for m in doc["messages"] if m.startswith("interrupted by SIGINT")]
    assert "after the change was complete" in said
    assert len(set(farm.fingerprints().values())) == 1
