"""Runs farmsync refuses before touching a live file: a bad web.config on one node, a node whose
config cannot be read, a farm locked by another process, a wrong vault passphrase."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.clikit import (
    FARM,
    LocalFarm,
    base_env,
    error_lines,
    json_of,
    make_local_farm,
    output_of,
)

MALFORMED = (
    '<?xml version="1.0"?>\n<configuration>\n  <system.web>\n'
    '    <machineKey validationKey="AB" \n  </system.web>\n</configuration>\n'
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    ' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n]>\n'
    "<configuration><system.web><compilation>&lol3;</compilation></system.web></configuration>\n"
)
ENCRYPTED = (
    '<?xml version="1.0"?>\n<configuration>\n'
    '  <system.web configProtectionProvider="RsaProtectedConfigurationProvider">\n'
    '    <EncryptedData Type="http://www.w3.org/2001/04/xmlenc#Element"'
    ' xmlns="http://www.w3.org/2001/04/xmlenc#">\n'
    "      <CipherData><CipherValue>AAAA</CipherValue></CipherData>\n"
    "    </EncryptedData>\n  </system.web>\n</configuration>\n"
)
# Each bad config and the line its error is on.
BAD_CONFIGS = {
    "malformed": (MALFORMED, 4),
    "doctype": (BILLION_LAUGHS, 2),
    "encrypted": (ENCRYPTED, 3),
}


def make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def make_symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


UNREADABLE: dict[str, tuple[Callable[[Path], None], str]] = {
    "directory": (make_directory, "is a directory"),
    "symlink-loop": (make_symlink_loop, "symbolic links"),
}


@dataclass
class Refused:
    farm: LocalFarm
    host: str
    before: dict[str, bytes | None]
    result: subprocess.CompletedProcess[str]

    @property
    def source(self) -> str:
        return f"{self.host}:{self.farm.configs[self.host]}"


@pytest.fixture(scope="module")
def refused_runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Refused]:
    """One run per scenario, shared by the tests that look at different sides of it."""
    cache: dict[tuple[str, tuple[str, ...]], Refused] = {}

    def run(case: str, *args: str) -> Refused:
        if (case, args) not in cache:
            farm = make_local_farm(tmp_path_factory.mktemp(case))
            host = "web2" if case in BAD_CONFIGS else "web3"
            path = farm.configs[host]
            if case in BAD_CONFIGS:
                path.write_text(BAD_CONFIGS[case][0])
            else:
                UNREADABLE[case][0](path)
            farm.remember()
            before = farm.node_files()
            cache[(case, args)] = Refused(farm, host, before, farm.run("rotate", *args))
        return cache[(case, args)]

    return run


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_on_one_node_is_bad_input_and_nothing_is_written(
    case: str, refused_runs: Callable[..., Refused]
) -> None:
    run = refused_runs(case, "--json")

    assert run.result.returncode == 2, output_of(run.result)
    doc = json_of(run.result)
    assert doc["outcome"] == "bad-input" and doc["exit_code"] == 2
    assert any(run.source in m for m in doc["messages"]), doc["messages"]
    # No staging file, no backup, every file byte for byte as it was, on every node.
    assert run.farm.node_files() == run.before
    assert "Traceback" not in run.result.stderr


@pytest.mark.parametrize("case", ["malformed", "doctype"])
def test_bad_config_message_names_the_line(case: str, refused_runs: Callable[..., Refused]) -> None:
    run = refused_runs(case, "--json")
    line = BAD_CONFIGS[case][1]
    assert any(f"{run.source}:{line}:" in m for m in json_of(run.result)["messages"])


def test_encrypted_config_message_names_the_line(refused_runs: Callable[..., Refused]) -> None:
    run = refused_runs("encrypted", "--json")
    assert any(f"{run.source}:3:" in m for m in json_of(run.result)["messages"])


def test_bad_config_message_names_its_source_once(refused_runs: Callable[..., Refused]) -> None:
    run = refused_runs("malformed", "--json")
    messages = json_of(run.result)["messages"]
    (message,) = [m for m in messages if not m.startswith("created vault ")]
    assert message.count(run.source) == 1, message


def test_bad_config_in_text_mode_names_host_path_and_line(
    refused_runs: Callable[..., Refused],
) -> None:
    run = refused_runs("malformed", "--limit", "web2")

    assert run.result.returncode == 2, output_of(run.result)
    # The reason once, on stderr; the table names the host and what kind of problem it was.
    assert run.result.stderr.count(f"{run.source}:4:") == 1, output_of(run.result)
    assert f"{run.source}:4:" not in run.result.stdout
    assert any("web2" in r and "bad-config" in r for r in run.result.stdout.splitlines())
    assert run.result.stdout.splitlines()[-1].startswith("bad input: nothing was changed")
    assert run.farm.node_files() == run.before


def test_bad_config_in_text_mode_on_the_whole_farm_reports_instead_of_crashing(
    refused_runs: Callable[..., Refused],
) -> None:
    run = refused_runs("malformed")
    assert "Traceback" not in run.result.stderr, run.result.stderr
    assert run.result.returncode == 2, output_of(run.result)
    assert f"{run.source}:4:" in run.result.stderr


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_root_config_cannot_start_and_changes_nothing(
    case: str, refused_runs: Callable[..., Refused]
) -> None:
    run = refused_runs(case, "--json")

    assert run.result.returncode == 3, output_of(run.result)
    doc = json_of(run.result)
    assert doc["outcome"] == "not-started" and doc["exit_code"] == 3
    (message,) = [m for m in doc["messages"] if str(run.farm.configs[run.host]) in m]
    assert message.startswith(f"{run.host} ") and UNREADABLE[case][1] in message, message
    assert run.farm.node_files() == run.before


def test_unreadable_root_config_in_text_mode(refused_runs: Callable[..., Refused]) -> None:
    run = refused_runs("directory", "--limit", "west")

    assert run.result.returncode == 3, output_of(run.result)
    assert f"{run.farm.configs[run.host]}" in run.result.stderr
    assert any("web3" in r and "is-directory" in r for r in run.result.stdout.splitlines())
    assert run.result.stdout.splitlines()[-1].startswith("not started: nothing was changed")
    assert run.farm.node_files() == run.before


def test_json_host_statuses_say_which_host_failed(refused_runs: Callable[..., Refused]) -> None:
    run = refused_runs("directory", "--json")
    hosts = {h["host"]: h for h in json_of(run.result)["hosts"]}
    assert hosts[run.host]["status"] in {"failed", "unreachable"}
    assert hosts[run.host]["error"]
    # The others were never started: not "unchanged", and no new key that was never written.
    others = [h for n, h in hosts.items() if n != run.host]
    assert {h["status"] for h in others} == {"not-started"}
    assert {f["new_fingerprint"] for h in others for f in h["files"]} == {None}
    assert json_of(run.result)["target_fingerprint"] is None


def test_a_run_that_did_not_start_says_why_once_and_shows_no_key(
    refused_runs: Callable[..., Refused],
) -> None:
    run = refused_runs("directory")
    out = run.result.stdout + run.result.stderr
    assert out.count("is a directory") == 1, out
    headline = run.result.stdout.splitlines()[-1]
    assert headline == "not started: nothing was changed", headline
    assert "mk-" not in run.result.stdout.split("\n")[-2] and "(new key)" not in out
    rows = [line for line in run.result.stdout.splitlines() if "│" in line]
    assert any("not-started" in row for row in rows), rows


# --- the lock ---------------------------------------------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from farmsync.orchestration.lock import FarmLock
from farmsync.orchestration.state import StateDir
state = StateDir(Path(sys.argv[1]), sys.argv[2]).ensure()
with FarmLock(state.lock, state.farm, command="farmsync rotate", run_id="R-HOLDER"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_rotate_while_the_farm_is_locked_exits_3_naming_the_holder(
    local_farm: LocalFarm,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(local_farm.state_root), FARM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=base_env(),
    )
    before = local_farm.node_files()
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"

        result = local_farm.run("rotate")

        assert result.returncode == 3, output_of(result)
        lines = error_lines(result)
        assert len(lines) == 1, output_of(result)
        assert f"farm '{FARM}' is locked by pid {holder.pid}" in lines[0]
        assert "farmsync rotate" in lines[0] and "run R-HOLDER" in lines[0]
        assert local_farm.node_files() == before
    finally:
        _stop(holder)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --- the vault passphrase ---------------------------------------------------------------------


def test_wrong_vault_passphrase_is_one_clear_error_and_the_farm_is_untouched(
    local_farm: LocalFarm,
) -> None:
    first = local_farm.run("rotate")
    assert first.returncode == 0, output_of(first)
    files = local_farm.node_files()
    vault = (local_farm.farm_dir / "vault.fsv").read_bytes()

    wrong = "not-the-passphrase-7Qx"
    result = local_farm.run("rotate", env=local_farm.env(FARMSYNC_VAULT_PASSPHRASE=wrong))

    assert result.returncode == 2, output_of(result)
    # The vault's key is derived while the nodes are read, so the refusal comes after the
    # read's progress lines: one error, and no phase past the read was started.
    lines = [line for line in error_lines(result) if line.startswith("farmsync:")]
    assert len(lines) == 1, output_of(result)
    assert "wrong passphrase" in lines[0] and "vault.fsv" in lines[0]
    phases = {line.split("[")[1].split("]")[0] for line in error_lines(result) if "[" in line}
    assert phases <= {"connect", "read"}, output_of(result)
    assert wrong not in result.stdout + result.stderr
    assert local_farm.node_files() == files
    assert (local_farm.farm_dir / "vault.fsv").read_bytes() == vault


def test_an_unforeseen_failure_is_one_line_without_a_traceback(local_farm: LocalFarm) -> None:
    # The journal cannot be written (a directory stands where the file goes): not an error
    # farmsync has a name for, yet it must still end in one short line and no traceback.
    (local_farm.farm_dir / "journal.jsonl").mkdir(parents=True)
    local_farm.remember()

    result = local_farm.run("rotate")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert lines and lines[-1].startswith("farmsync: internal error: unexpected")
    assert "farmsync recover" in lines[-1]
    assert local_farm.contents() == local_farm.originals  # nothing was committed
