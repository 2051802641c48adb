"""Session scenarios (PROTOCOL.md, "Sessions" and ``stage_commit``) for an agent process.

One process serves many request lines; answers are read as they come and the release word is
written only after the armed line was seen. Each case is ``case(argv, root)``: ``argv`` starts
an agent that reads the stdin protocol (the Python twin, or pwsh with the PowerShell
bootstrap), ``root`` an empty directory. The same cases run against both agents
(``test_agent_protocol.py`` and, where pwsh exists, ``test_ps1_syntax.py``), so the two are
held to the same exchanges, byte for byte where the protocol fixes the bytes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from farmsync.nodes import psagent
from farmsync.nodes.contract import backup_path, staging_path
from tests.nodes.contract_cases import NEW, OLD, live, sha

SessionCase = Callable[[Sequence[str], Path], None]
WAIT = 60.0  # seconds for one answer: generous, pwsh starts slowly; never a timed assertion


class AgentProcess:
    """One agent process; its stdout read line by line in a thread, so that a missing answer
    fails the test instead of hanging it."""

    def __init__(self, argv: Sequence[str]):
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw)
        self._lines.put(b"")  # end of output

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, op: str, **args: Any) -> None:
        self.send(psagent.request_line(op, args))

    def line(self) -> Any:
        """The next JSON line (a BOM or a blank line before it is skipped, as psagent does)."""
        while True:
            raw = self._lines.get(timeout=WAIT)
            assert raw, "the agent ended before answering"
            text = raw.strip().lstrip(b"\xef\xbb\xbf")
            if text.startswith(b"{"):
                return json.loads(text)

    def answer(self, op: str, **args: Any) -> Any:
        self.request(op, **args)
        return self.line()

    def ended(self) -> int:
        """Wait for the agent to exit on its own (stdin still open); its exit status."""
        status = self.proc.wait(timeout=WAIT)
        assert self._lines.get(timeout=WAIT) == b"", "nothing is written after the last answer"
        return status

    def end(self) -> int:
        """End of input, then the agent's exit status."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        return self.ended()


@contextmanager
def agent_process(argv: Sequence[str]) -> Iterator[AgentProcess]:
    agent = AgentProcess(argv)
    try:
        yield agent
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
        for stream in (agent.proc.stdin, agent.proc.stdout):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


def stage_commit_args(path: str, run_id: str = "run1", keep_backups: int = 10) -> dict[str, Any]:
    item = {
        "path": path,
        "content_b64": base64.b64encode(NEW).decode("ascii"),
        "expected_sha256": sha(OLD),
        "staged_sha256": sha(NEW),
    }
    return {"run_id": run_id, "items": [item], "keep_backups": keep_backups}


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".farmsync-" in p.name)


# --- the cases ------------------------------------------------------------------------------


def a_rotation_is_one_process(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    with agent_process(argv) as agent:
        first = agent.answer("read", paths=[path])
        assert first["ok"] and first["result"]["files"][0]["sha256"] == sha(OLD)
        agent.request("stage_commit", **stage_commit_args(path))
        assert agent.line() == {"armed": True}
        assert Path(path).read_bytes() == OLD, "armed: nothing replaced yet"
        assert Path(staging_path(path, "run1")).read_bytes() == NEW
        agent.send(psagent.COMMIT_WORD)
        released = agent.line()
        again = agent.answer("read", paths=[path])  # the same op twice in one process
        backups = agent.answer("list_backups", paths=[path])
        assert agent.end() == 0
    assert released["ok"] is True, released
    result = released["result"]
    assert set(result) == {"committed", "files", "removed"}
    assert result["committed"] == [path] and result["removed"] == []
    (entry,) = result["files"]
    # read's entry without the bytes: the controller verifies from the hash alone.
    assert set(entry) == {"path", "status", "sha256", "mtime", "file_id"}
    assert entry["path"] == path and entry["status"] == "ok" and entry["sha256"] == sha(NEW)
    assert entry["file_id"] == again["result"]["files"][0]["file_id"]
    assert again["result"]["files"][0]["sha256"] == sha(NEW)
    assert backups["result"] == {"backups": {path: ["run1"]}}
    assert Path(path).read_bytes() == NEW
    assert Path(backup_path(path, "run1")).read_bytes() == OLD
    assert leftovers(root) == ["web.config.farmsync-run1.bak"]


def the_two_phase_ops_work_in_one_session(argv: Sequence[str], root: Path) -> None:
    """stage, commit, rollback and cleanup one after another: each op's functions are its own
    (a scope per request), and each answer belongs to its request."""
    path = live(root)
    item = {
        "path": path,
        "content_b64": base64.b64encode(NEW).decode(),
        "expected_sha256": sha(OLD),
    }
    commit = {"path": path, "expected_sha256": sha(OLD), "staged_sha256": sha(NEW)}
    with agent_process(argv) as agent:
        assert agent.answer("stage", run_id="r1", items=[item])["result"] == {"staged": [path]}
        agent.request("commit", run_id="r1", items=[commit])
        assert agent.line() == {"armed": True}
        agent.send(psagent.COMMIT_WORD)
        assert agent.line() == {"ok": True, "result": {"committed": [path]}}
        rolled = agent.answer("rollback", run_id="r1", paths=[path], expected={path: sha(OLD)})
        assert rolled == {"ok": True, "result": {"restored": [path], "skipped": []}}
        cleaned = agent.answer("cleanup", run_id="r1", paths=[path], keep_backups=0)
        assert cleaned["ok"] is True
        assert agent.end() == 0
    assert Path(path).read_bytes() == OLD
    assert leftovers(root) == ["web.config.farmsync-r1.bak"]  # never this run's own backup


def a_broken_frame_is_answered_and_ends_the_session(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    with agent_process(argv) as agent:
        assert agent.answer("read", paths=[path])["ok"] is True
        agent.send(b"this is not a request\r\n")
        error = agent.line()
        assert agent.ended() == 1  # stdin still open: it stopped reading by itself
    assert error["ok"] is False
    assert error["error"]["kind"] == "protocol" and error["error"]["path"] is None


def another_protocol_version_ends_the_session(argv: Sequence[str], root: Path) -> None:
    line = base64.b64encode(json.dumps({"v": 2, "op": "read", "args": {}}).encode()) + b"\r\n"
    with agent_process(argv) as agent:
        agent.send(line)
        error = agent.line()
        assert agent.ended() == 1
    assert error["ok"] is False and error["error"]["kind"] == "protocol"


def errors_are_answered_and_the_session_goes_on(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    with agent_process(argv) as agent:
        bad_run = agent.answer("cleanup", run_id="../x", paths=[path], keep_backups=1)
        assert bad_run["error"] == {"kind": "protocol", "detail": "invalid run id", "path": None}
        mistyped = agent.answer("stage", run_id="r1", items="not a list")
        assert mistyped["error"]["kind"] == "protocol"
        assert "missing or not" in mistyped["error"]["detail"]
        Path(path).write_bytes(b"someone else's edit")
        changed = agent.answer("stage_commit", **stage_commit_args(path))  # no armed line
        assert changed["error"]["kind"] == "changed-since-read"
        assert agent.answer("read", paths=[path])["ok"] is True
        missing = agent.answer("read", paths=[str(root / "absent.config")])
        assert missing["result"]["files"][0]["status"] == "missing"
        refused = agent.answer("cleanup", run_id="r1", paths=[path], keep_backups=-1)
        assert refused["error"]["detail"] == "keep_backups must be >= 0"
        assert agent.end() == 1  # the status of the last answer
    assert leftovers(root) == []


def the_line_after_armed_is_a_word_never_a_request(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    with agent_process(argv) as agent:
        agent.request("stage_commit", **stage_commit_args(path))
        assert agent.line() == {"armed": True}
        # A valid request where the word is due: not COMMIT, so the release is aborted and
        # the line is never run as a request.
        agent.request("cleanup", run_id="run1", paths=[path], keep_backups=0)
        assert agent.line() == {"ok": True, "result": {"aborted": True}}
        assert leftovers(root) == [], "the staging file this request wrote is removed"
        after = agent.answer("read", paths=[path])
        assert after["result"]["files"][0]["sha256"] == sha(OLD)
        assert agent.end() == 0
    assert Path(path).read_bytes() == OLD


def end_of_input_at_the_word_aborts_and_ends(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    with agent_process(argv) as agent:
        agent.request("stage_commit", **stage_commit_args(path))
        assert agent.line() == {"armed": True}
        assert agent.proc.stdin is not None
        agent.proc.stdin.close()
        assert agent.line() == {"ok": True, "result": {"aborted": True}}
        assert agent.ended() == 0
    assert Path(path).read_bytes() == OLD
    assert leftovers(root) == []


def stage_commit_refused_at_its_checks_removes_what_it_staged(
    argv: Sequence[str], root: Path
) -> None:
    path = live(root)
    Path(backup_path(path, "run1")).write_bytes(b"a backup of this run already")
    with agent_process(argv) as agent:
        refused = agent.answer("stage_commit", **stage_commit_args(path))
        assert agent.answer("read", paths=[path])["ok"] is True  # the session goes on
        assert agent.end() == 0
    assert refused["ok"] is False and refused["error"]["kind"] == "backup-exists"
    assert Path(path).read_bytes() == OLD
    assert leftovers(root) == ["web.config.farmsync-run1.bak"]
    assert Path(backup_path(path, "run1")).read_bytes() == b"a backup of this run already"


def stage_commit_prunes_old_backups_in_the_release(argv: Sequence[str], root: Path) -> None:
    path = live(root)
    old = [backup_path(path, f"2020010{i}T000000Z-a") for i in range(1, 4)]
    for name in old:
        Path(name).write_bytes(OLD)
    with agent_process(argv) as agent:
        agent.request("stage_commit", **stage_commit_args(path, "20261127T000000Z-b", 2))
        assert agent.line() == {"armed": True}
        agent.send(psagent.COMMIT_WORD)
        released = agent.line()
        assert agent.end() == 0
    # Newest first by run id: this run's and 20200103's stay; 20200101 and 20200102 go.
    assert sorted(released["result"]["removed"]) == sorted(old[:2])
    assert Path(backup_path(path, "20261127T000000Z-b")).read_bytes() == OLD


def a_stage_commit_of_no_items_is_answered_whole(argv: Sequence[str], root: Path) -> None:
    # Empty lists all the way through (PowerShell passes them between functions as arrays).
    with agent_process(argv) as agent:
        agent.request("stage_commit", run_id="run1", items=[], keep_backups=10)
        assert agent.line() == {"armed": True}
        agent.send(psagent.COMMIT_WORD)
        released = agent.line()
        assert agent.end() == 0
    assert released == {"ok": True, "result": {"committed": [], "files": [], "removed": []}}


def no_request_ends_with_status_zero(argv: Sequence[str], root: Path) -> None:
    with agent_process(argv) as agent:
        assert agent.end() == 0


SESSION_CASES: list[SessionCase] = [
    a_rotation_is_one_process,
    the_two_phase_ops_work_in_one_session,
    a_broken_frame_is_answered_and_ends_the_session,
    another_protocol_version_ends_the_session,
    errors_are_answered_and_the_session_goes_on,
    the_line_after_armed_is_a_word_never_a_request,
    end_of_input_at_the_word_aborts_and_ends,
    stage_commit_refused_at_its_checks_removes_what_it_staged,
    stage_commit_prunes_old_backups_in_the_release,
    a_stage_commit_of_no_items_is_answered_whole,
    no_request_ends_with_status_zero,
]


def session_case_id(case: SessionCase) -> str:
    return case.__name__
