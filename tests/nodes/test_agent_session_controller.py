"""The controller's session (``agent_session.AgentSession``) over plain pipes to real processes:
the Python twin, or small stand-ins that misbehave (answer garbage, never answer, arm and
then hang). What WinRM and SSH-Windows add is their transport; the rules are tested here."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes import agent_session, psagent
from farmsync.nodes.contract import CommitItem, StageItem, staging_path
from tests.nodes.contract_cases import NEW, OLD, live, sha

TWIN = [sys.executable, "-m", "farmsync.nodes.agent"]
# Answers every line with a result that is not an object.
GARBAGE = [
    sys.executable,
    "-c",
    'import sys\nfor _ in sys.stdin: print(\'{"ok": true, "result": 5}\', flush=True)',
]
# Reads its input and never answers.
SILENT = [sys.executable, "-c", "import sys; sys.stdin.read()"]
# Arms, then never answers the word.
ARMS_AND_HANGS = [
    sys.executable,
    "-c",
    "import sys, time\nsys.stdin.readline()\nprint('{\"armed\": true}', flush=True)\n"
    "sys.stdin.readline()\ntime.sleep(600)",
]


class PipeChannel:
    """An agent process on this machine, its stdin and stdout pipes."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, data: bytes, phase: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # ended: the receive sees the end of its output

    def receive(
        self, deadline: float, until: Callable[[bytes], bool], phase: str
    ) -> agent_session.Received:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.drop()
                raise NodeError("pipe", NodeErrorKind.TIMEOUT, "no answer", phase=phase)
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return agent_session.Received(data, b"", True)
            data += chunk
            if until(chunk):
                return agent_session.Received(data, b"", False)

    def drop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class Pipes:
    """Opens PipeChannels running ``argv`` (changeable between agents); keeps them all."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.opened: list[PipeChannel] = []

    def __call__(self, phase: str) -> agent_session.AgentChannel:
        channel = PipeChannel(self.argv)
        self.opened.append(channel)
        return channel


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    made = Pipes(TWIN)
    yield made
    for channel in made.opened:
        channel.drop()


def test_requests_share_one_agent_and_close_ends_it(pipes: Pipes, tmp_path: Path) -> None:
    path = live(tmp_path)
    session = agent_session.AgentSession("node", pipes, timeout=30)
    assert session.request("read", psagent.read_args([path]))["files"][0]["sha256"] == sha(OLD)
    assert session.request("list_backups", psagent.list_backups_args([path])) == {
        "backups": {path: []}
    }
    with pytest.raises(NodeError) as err:  # an op error: answered, the agent stays
        session.request("cleanup", psagent.cleanup_args([path], "../bad", 1))
    assert err.value.kind is NodeErrorKind.PROTOCOL
    session.request("read", psagent.read_args([path]))
    (agent,) = pipes.opened
    session.close()
    assert agent.proc.returncode == 0  # ended on EOF, with the status of its last answer
    assert session.agents_started == 1


def test_an_aborted_stage_commit_keeps_the_agent_and_removes_its_staging(
    pipes: Pipes, tmp_path: Path
) -> None:
    path = live(tmp_path)
    session = agent_session.AgentSession("node", pipes, timeout=30)
    items = [(StageItem(path, NEW, sha(OLD)), CommitItem(path, sha(OLD), sha(NEW)))]
    armed = session.arm("stage_commit", psagent.stage_commit_args(items, "run1", 1))
    assert Path(staging_path(path, "run1")).exists()
    armed.abort()
    assert not Path(staging_path(path, "run1")).exists()
    assert Path(path).read_bytes() == OLD
    session.request("read", psagent.read_args([path]))
    assert session.agents_started == 1


def test_an_agent_that_ended_is_connection_lost_and_a_read_goes_to_a_fresh_one(
    pipes: Pipes, tmp_path: Path
) -> None:
    path = live(tmp_path)
    session = agent_session.AgentSession("node", pipes, timeout=30)
    session.request("read", psagent.read_args([path]))
    pipes.opened[0].drop()  # killed between two requests
    assert session.request("read", psagent.read_args([path]))["files"][0]["status"] == "ok"
    assert session.agents_started == 2

    pipes.opened[1].drop()
    with pytest.raises(NodeError) as err:
        session.request("stage", psagent.stage_args([StageItem(path, NEW, sha(OLD))], "run1"))
    assert (err.value.kind, err.value.detail) == (
        NodeErrorKind.CONNECTION_LOST,
        agent_session.AGENT_ENDED,
    )
    assert session.agents_started == 2  # never sent twice
    assert not Path(staging_path(path, "run1")).exists()


def test_an_answer_that_cannot_be_read_drops_the_session(pipes: Pipes) -> None:
    pipes.argv = GARBAGE
    session = agent_session.AgentSession("node", pipes, timeout=30)
    with pytest.raises(NodeError) as err:
        session.request("read", psagent.read_args([]))
    assert err.value.kind is NodeErrorKind.PROTOCOL
    assert pipes.opened[0].proc.returncode is not None  # ended by the controller
    pipes.argv = TWIN
    assert session.request("read", psagent.read_args([]))["files"] == []
    assert session.agents_started == 2


def test_a_timeout_drops_the_session(pipes: Pipes) -> None:
    pipes.argv = SILENT
    session = agent_session.AgentSession("node", pipes, timeout=0.5)
    with pytest.raises(NodeError) as err:
        session.request("read", psagent.read_args([]))
    assert err.value.kind is NodeErrorKind.TIMEOUT  # not retried: it did not end, it hung
    assert session.agents_started == 1
    assert pipes.opened[0].proc.returncode is not None


def test_a_release_given_up_on_ends_the_agent(pipes: Pipes) -> None:
    pipes.argv = ARMS_AND_HANGS
    session = agent_session.AgentSession("node", pipes, timeout=30)
    armed = session.arm("commit", psagent.commit_args([], "run1"))
    armed.release()
    with pytest.raises(NodeError) as err:
        armed.wait(0.5)
    assert err.value.kind is NodeErrorKind.TIMEOUT
    armed.abort()  # nothing left to withdraw: the agent is gone
    assert pipes.opened[0].proc.returncode is not None
    pipes.argv = TWIN
    session.request("read", psagent.read_args([]))
    assert session.agents_started == 2


def test_a_request_while_a_commit_is_armed_goes_to_a_fresh_agent(
    pipes: Pipes, tmp_path: Path
) -> None:
    path = live(tmp_path)
    session = agent_session.AgentSession("node", pipes, timeout=30)
    session.request("stage", psagent.stage_args([StageItem(path, NEW, sha(OLD))], "run1"))
    armed = session.arm(
        "commit", psagent.commit_args([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    )
    # The rollback's fence, while the commit is held: removes the staging file.
    session.request("rollback", psagent.rollback_args([path], "run1", {path: sha(OLD)}))
    assert session.agents_started == 2
    armed.release()
    with pytest.raises(NodeError) as err:  # the late commit finds nothing to put in place
        armed.wait(30)
    assert err.value.kind is NodeErrorKind.NOT_FOUND
    assert Path(path).read_bytes() == OLD
    assert pipes.opened[0].proc.wait(10) is not None  # the held agent was let go
    session.close()
