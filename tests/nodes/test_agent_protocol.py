"""The node agent's stdin protocol, end to end: ``python -m farmsync.nodes.agent`` run as a
real process, driven with the request lines psagent builds (what the SSH and WinRM
transports send to PowerShell nodes)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from farmsync.nodes import psagent
from farmsync.nodes.contract import CommitItem, StageItem, backup_path, staging_path
from tests.nodes.contract_cases import (
    CONTRACT_CASES,
    NEW,
    OLD,
    SECRET_HEX,
    ContractCase,
    ProcessAgentNode,
    case_id,
    live,
    sha,
    stage,
)
from tests.nodes.session_cases import SESSION_CASES, SessionCase, session_case_id

Done = subprocess.CompletedProcess[bytes]
AGENT = [sys.executable, "-m", "farmsync.nodes.agent"]


def run_agent(
    stdin: bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(AGENT, input=stdin, capture_output=True, timeout=60, env=env)


def final(stdout: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.splitlines()[-1])
    return result


def error_of(stdout: bytes) -> dict[str, Any]:
    error: dict[str, Any] = final(stdout)["error"]
    return error


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_agent_process_contract(case: ContractCase, tmp_path: Path) -> None:
    case(ProcessAgentNode(AGENT), tmp_path)


@pytest.mark.parametrize("case", SESSION_CASES, ids=session_case_id)
def test_agent_process_session(case: SessionCase, tmp_path: Path) -> None:
    # The same session cases pwsh runs with the PowerShell agent (test_ps1_syntax.py).
    case(AGENT, tmp_path)


def test_armed_commit_exchange(tmp_path: Path) -> None:
    path = live(tmp_path)
    node = ProcessAgentNode(AGENT)
    stage(node, path, NEW, "run1")
    args = psagent.commit_args([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    proc = subprocess.Popen(AGENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(psagent.request_line("commit", args))
        proc.stdin.flush()
        reader = psagent.ArmedReader()
        assert reader.feed(proc.stdout.readline()), "first line is the armed line"
        assert Path(path).read_bytes() == OLD, "armed: nothing replaced yet"
        proc.stdin.write(psagent.COMMIT_WORD)
        proc.stdin.close()
        out = proc.stdout.read()
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert psagent.parse_output(reader.output + out) == {"committed": [path]}
    assert Path(path).read_bytes() == NEW
    assert Path(backup_path(path, "run1")).read_bytes() == OLD


@pytest.mark.parametrize(
    "word", [psagent.ABORT_WORD, b"", b"commit please\r\n", b"commit\r\n", b" COMMIT\r\n"]
)
def test_commit_without_the_word_aborts(tmp_path: Path, word: bytes) -> None:
    path = live(tmp_path)
    stage(ProcessAgentNode(AGENT), path, NEW, "run1")
    args = psagent.commit_args([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    done = run_agent(psagent.request_line("commit", args) + word)  # b"": EOF after arming
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {"armed": True}
    assert psagent.parse_output(done.stdout) == {"aborted": True}
    assert done.returncode == 0
    assert Path(path).read_bytes() == OLD
    assert not Path(backup_path(path, "run1")).exists()
    assert Path(staging_path(path, "run1")).exists()


def test_commit_refused_at_arm_never_arms(tmp_path: Path) -> None:
    path = live(tmp_path, content=b"someone else's edit")
    args = psagent.commit_args([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    reader = psagent.ArmedReader()
    done = run_agent(psagent.request_line("commit", args) + psagent.COMMIT_WORD)
    reader.feed(done.stdout)
    assert not reader.armed and reader.finished
    assert done.returncode == 1
    assert final(done.stdout)["ok"] is False


@pytest.mark.parametrize(
    "line",
    [
        b"this is not base64!\r\n",
        base64.b64encode(b"not json") + b"\r\n",
        base64.b64encode(json.dumps({"v": 2, "op": "read", "args": {}}).encode()) + b"\r\n",
        base64.b64encode(json.dumps({"v": 1, "op": "format_c", "args": {}}).encode()) + b"\r\n",
        base64.b64encode(json.dumps({"v": 1, "op": "read", "args": {"paths": 3}}).encode()),
        base64.b64encode(json.dumps({"v": 1, "op": "stage", "args": {"run_id": "r"}}).encode()),
    ],
)
def test_bad_requests_are_protocol_errors(line: bytes) -> None:
    done = run_agent(line)
    assert done.returncode == 1
    assert final(done.stdout)["ok"] is False
    assert error_of(done.stdout)["kind"] == "protocol"
    assert error_of(done.stdout)["path"] is None


def test_bad_content_b64_is_protocol_error_and_writes_nothing(tmp_path: Path) -> None:
    path = live(tmp_path)
    item = {"path": path, "content_b64": "%%%", "expected_sha256": sha(OLD)}
    done = run_agent(psagent.request_line("stage", {"run_id": "r1", "items": [item]}))
    assert error_of(done.stdout)["kind"] == "protocol"
    assert sorted(os.listdir(tmp_path)) == ["web.config"]


def test_env_references_in_paths_are_expanded_on_the_node(tmp_path: Path) -> None:
    path = live(tmp_path)
    env = {**os.environ, "FARMSYNC_SITE": str(tmp_path)}
    done = run_agent(psagent.request_line("read", {"paths": ["%FARMSYNC_SITE%/web.config"]}), env)
    files = psagent.files_from_result(psagent.parse_output(done.stdout))
    state = files["%FARMSYNC_SITE%/web.config"]
    assert state.content == OLD and state.sha256 == sha(OLD)
    assert path.endswith("web.config")


def test_output_is_ascii_json_lines_and_errors_carry_no_content(tmp_path: Path) -> None:
    path = live(tmp_path, "wéb.config", content=NEW)
    args = psagent.stage_args([StageItem(path, NEW, sha(OLD))], "r1")
    done = run_agent(psagent.request_line("stage", args))
    assert done.stdout.isascii()
    assert SECRET_HEX.encode() not in done.stdout + done.stderr
    assert error_of(done.stdout)["kind"] == "changed-since-read"


def test_cleanup_without_keep_backups_is_refused_and_keeps_every_backup(tmp_path: Path) -> None:
    # A missing value must never become 0 (which would delete every backup).
    path = live(tmp_path)
    Path(backup_path(path, "r0")).write_bytes(OLD)
    done = run_agent(psagent.request_line("cleanup", {"run_id": "r1", "paths": [path]}))
    assert error_of(done.stdout) == {
        "kind": "protocol",
        "detail": "argument 'keep_backups' missing or not int",
        "path": None,
    }
    assert Path(backup_path(path, "r0")).exists()


@pytest.mark.parametrize(
    "item",
    [
        {"path": "P", "content_b64": None, "expected_sha256": "0" * 64},
        {"path": "P", "content_b64": "QUJD", "expected_sha256": 7},
        {"path": ["P"], "content_b64": "QUJD", "expected_sha256": "0" * 64},
    ],
)
def test_mistyped_items_are_refused_before_anything_is_written(
    tmp_path: Path, item: dict[str, Any]
) -> None:
    path = live(tmp_path)
    item = {k: (path if v == "P" else v) for k, v in item.items()}
    done = run_agent(psagent.request_line("stage", {"run_id": "r1", "items": [item]}))
    assert error_of(done.stdout)["kind"] == "protocol"
    assert "missing or not" in error_of(done.stdout)["detail"]
    assert sorted(os.listdir(tmp_path)) == ["web.config"]


def test_the_same_file_named_twice_is_refused_after_expansion(tmp_path: Path) -> None:
    path = live(tmp_path)
    twin = str(tmp_path / "." / "web.config")
    items = [StageItem(p, NEW, sha(OLD)) for p in (path, twin)]
    done = run_agent(psagent.request_line("stage", psagent.stage_args(items, "r1")))
    assert error_of(done.stdout)["detail"] == "the same path is listed twice"
    assert sorted(os.listdir(tmp_path)) == ["web.config"]
