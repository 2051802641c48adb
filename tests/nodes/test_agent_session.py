"""The twin's session loop (PROTOCOL.md, "Sessions") and its ``stage_commit`` op, driven
through ``agent.main()`` over real pipes: one request line after another, answers read as
they come, the release word written only after the armed line was seen."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from farmsync.nodes import agent, psagent
from farmsync.nodes.contract import backup_path, sha256_hex, staging_path
from tests.nodes.contract_cases import NEW, OLD, live, sha


class Session:
    """``agent.main()`` in a thread, its stdin and stdout real pipes."""

    def __init__(self) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        self._stdin_r: IO[bytes] = open(in_r, "rb")  # noqa: SIM115 - closed by the agent's end
        self._stdout_w: IO[bytes] = open(out_w, "wb")  # noqa: SIM115
        self.stdin: IO[bytes] = open(in_w, "wb", buffering=0)  # noqa: SIM115
        self.stdout: IO[bytes] = open(out_r, "rb")  # noqa: SIM115
        self.status: int | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.status = agent.main(self._stdin_r, self._stdout_w)
        finally:
            self._stdout_w.close()
            self._stdin_r.close()

    def send(self, line: bytes) -> None:
        self.stdin.write(line)

    def line(self) -> Any:
        raw = self.stdout.readline()
        assert raw, "the agent ended before answering"
        return json.loads(raw)

    def ended(self) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive()

    def end(self) -> int | None:
        """Close stdin (end of input), wait for the agent; its exit status."""
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()
        self.ended()
        rest = self.stdout.read()
        self.stdout.close()
        assert rest == b"", "nothing is written after the last answer"
        return self.status


@contextmanager
def session() -> Iterator[Session]:
    s = Session()
    try:
        yield s
    finally:
        with contextlib.suppress(BrokenPipeError):
            s.stdin.close()


def request(op: str, **args: Any) -> bytes:
    return psagent.request_line(op, args)


def stage_commit_line(path: str, run_id: str = "run1", keep_backups: int = 10) -> bytes:
    item = {
        "path": path,
        "content_b64": base64.b64encode(NEW).decode(),
        "expected_sha256": sha(OLD),
        "staged_sha256": sha(NEW),
    }
    return request("stage_commit", run_id=run_id, items=[item], keep_backups=keep_backups)


def test_one_agent_serves_a_whole_rotation(tmp_path: Path) -> None:
    path = live(tmp_path)
    with session() as s:
        s.send(request("read", paths=[path]))
        read = s.line()
        assert read["ok"] and read["result"]["files"][0]["sha256"] == sha(OLD)
        s.send(stage_commit_line(path))
        assert s.line() == {"armed": True}
        assert Path(path).read_bytes() == OLD  # armed: nothing replaced yet
        assert Path(staging_path(path, "run1")).read_bytes() == NEW
        s.send(psagent.COMMIT_WORD)
        answer = s.line()
        s.send(request("list_backups", paths=[path]))
        backups = s.line()
        assert s.end() == 0
    assert answer["ok"], answer
    result = answer["result"]
    assert result["committed"] == [path]
    (entry,) = result["files"]
    assert entry["status"] == "ok" and entry["sha256"] == sha256_hex(NEW)
    assert "content_b64" not in entry  # the verify answer carries no bytes
    assert entry["file_id"] and isinstance(entry["mtime"], float)
    assert entry["mtime"] == os.stat(path).st_mtime
    assert result["removed"] == []  # the staging file became the live file
    assert Path(path).read_bytes() == NEW
    assert Path(backup_path(path, "run1")).read_bytes() == OLD
    assert not Path(staging_path(path, "run1")).exists()
    assert backups["result"] == {"backups": {path: ["run1"]}}


def test_a_broken_frame_is_answered_and_ends_the_session(tmp_path: Path) -> None:
    path = live(tmp_path)
    with session() as s:
        s.send(request("read", paths=[path]))
        assert s.line()["ok"]
        s.send(b"this is not a request\r\n")
        error = s.line()
        s.ended()  # without end of input: the agent stopped reading on its own
        with pytest.raises(BrokenPipeError):
            s.send(request("read", paths=[path]))
        assert s.end() == 1
    assert error["ok"] is False and error["error"]["kind"] == "protocol"


def test_another_protocol_version_ends_the_session() -> None:
    line = base64.b64encode(json.dumps({"v": 2, "op": "read", "args": {}}).encode()) + b"\r\n"
    with session() as s:
        s.send(line)
        assert s.line()["error"]["detail"] == "unsupported protocol version"
        assert s.end() == 1


def test_op_and_argument_errors_are_answered_and_the_session_goes_on(tmp_path: Path) -> None:
    path = live(tmp_path)
    unknown = base64.b64encode(json.dumps({"v": 1, "op": "format_c", "args": {}}).encode())
    with session() as s:
        s.send(unknown + b"\r\n")
        assert s.line()["error"]["kind"] == "protocol"
        s.send(request("cleanup", run_id="../x", paths=[path], keep_backups=1))
        assert s.line()["error"] == {"kind": "protocol", "detail": "invalid run id", "path": None}
        s.send(request("commit", run_id="run1", items=[]) + psagent.COMMIT_WORD)
        assert s.line() == {"armed": True}
        assert s.line() == {"ok": True, "result": {"committed": []}}
        s.send(request("read", paths=[str(tmp_path / "missing")]))
        assert s.line()["result"]["files"][0]["status"] == "missing"
        s.send(request("stage", run_id="run1", items="not a list"))
        assert s.line()["ok"] is False
        assert s.end() == 1  # the status of the last answer


def test_the_line_after_armed_is_a_word_never_a_request(tmp_path: Path) -> None:
    path = live(tmp_path)
    with session() as s:
        s.send(stage_commit_line(path))
        assert s.line() == {"armed": True}
        # A valid request where the word is due: not COMMIT, so the commit is aborted and
        # the line is not run as a request.
        s.send(request("cleanup", run_id="run1", paths=[path], keep_backups=0))
        assert s.line() == {"ok": True, "result": {"aborted": True}}
        s.send(request("read", paths=[path]))
        assert s.line()["result"]["files"][0]["sha256"] == sha(OLD)
        assert s.end() == 0
    assert Path(path).read_bytes() == OLD
    assert not Path(staging_path(path, "run1")).exists()  # this request's staging file
    assert not Path(backup_path(path, "run1")).exists()


def test_end_of_input_ends_the_agent() -> None:
    with session() as s:
        assert s.end() == 0  # no request: nothing answered, status 0


def test_end_of_input_at_the_word_aborts_and_ends(tmp_path: Path) -> None:
    path = live(tmp_path)
    with session() as s:
        s.send(stage_commit_line(path))
        assert s.line() == {"armed": True}
        s.stdin.close()
        assert s.line() == {"ok": True, "result": {"aborted": True}}
        assert s.end() == 0
    assert Path(path).read_bytes() == OLD
    assert not Path(staging_path(path, "run1")).exists()


def test_stage_commit_refused_at_its_checks_removes_what_it_staged(tmp_path: Path) -> None:
    path = live(tmp_path)
    Path(backup_path(path, "run1")).write_bytes(b"a backup of this run already")
    with session() as s:
        s.send(stage_commit_line(path))
        answer = s.line()  # no armed line: the checks failed
        assert s.end() == 1
    assert answer["error"]["kind"] == "backup-exists"
    assert Path(path).read_bytes() == OLD
    assert not Path(staging_path(path, "run1")).exists()
    assert Path(backup_path(path, "run1")).read_bytes() == b"a backup of this run already"


def test_stage_commit_refuses_a_negative_retention_before_writing(tmp_path: Path) -> None:
    path = live(tmp_path)
    with session() as s:
        s.send(stage_commit_line(path, keep_backups=-1))
        assert s.line()["error"]["kind"] == "protocol"
        assert s.end() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.config"]


def test_a_failed_cleanup_is_a_warning_and_the_commit_stands(tmp_path: Path) -> None:
    path = live(tmp_path)
    blocker = Path(agent.temp_path(path, "run1"))
    blocker.mkdir()  # cleanup cannot unlink a directory at the temp file's name
    (blocker / "x").write_bytes(b"")
    with session() as s:
        s.send(stage_commit_line(path))
        assert s.line() == {"armed": True}
        s.send(psagent.COMMIT_WORD)
        answer = s.line()
        assert s.end() == 0
    assert answer["ok"] is True
    assert answer["result"]["committed"] == [path]
    assert answer["result"]["removed"] == []
    (warning,) = answer["result"]["warnings"]
    assert warning.startswith("cleanup: is-directory: ")
    assert Path(path).read_bytes() == NEW


def test_stage_commit_prunes_old_backups_in_the_release(tmp_path: Path) -> None:
    path = live(tmp_path)
    old_backups = [backup_path(path, f"2020010{i}T000000Z-a") for i in range(1, 4)]
    for name in old_backups:
        Path(name).write_bytes(OLD)
    with session() as s:
        s.send(stage_commit_line(path, run_id="2026010", keep_backups=2))
        assert s.line() == {"armed": True}
        s.send(psagent.COMMIT_WORD)
        answer = s.line()
        assert s.end() == 0
    assert sorted(answer["result"]["removed"]) == sorted(old_backups[:2])
    assert Path(backup_path(path, "2026010")).read_bytes() == OLD
