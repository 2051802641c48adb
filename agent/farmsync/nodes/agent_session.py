"""The controller's side of an agent session (PROTOCOL.md, "Sessions"): one agent process
per node per run, request after request on its stdin, for WinRM and SSH to Windows alike.

The transports provide the pipe (:class:`AgentChannel`: a WinRM Command, an SSH exec
channel); this module decides when a session is used, dropped, restarted or retried, and
turns a release into the :class:`~farmsync.nodes.contract.ArmedCommit` the rollout holds.
Request lines and answers are built and read by ``psagent``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes.contract import ArmedCommit, FileState
from farmsync.nodes.psagent import (
    ABORT_WORD,
    COMMIT_WORD,
    ArmedReader,
    parse_output,
    request_line,
    verify_states,
)

log = logging.getLogger(__name__)

# Sent once more to a fresh agent when the session's agent had ended: reading twice, or
# rolling back or cleaning up twice, leaves the node as once.
RETRIED_OPS = frozenset({"read", "audit", "list_backups", "doctor", "rollback", "cleanup"})
AGENT_ENDED = "the node agent ended before answering"


@dataclass(frozen=True)
class Received:
    """What one receive loop got: stdout (also fed to ``until``), stderr, and whether the
    agent process ended (EOF, command state Done)."""

    stdout: bytes
    stderr: bytes
    ended: bool


class AgentChannel(Protocol):
    """The pipe to one running agent process, as a transport provides it (WinRM: one
    Command in the shell; SSH: one exec channel). Failures are NodeErrors."""

    def send(self, data: bytes, phase: str) -> None:
        """Write to the agent's stdin (never its end)."""

    def receive(self, deadline: float, until: Callable[[bytes], bool], phase: str) -> Received:
        """Read until ``until(stdout chunk)`` is true or the agent ends; TIMEOUT at the
        deadline (the transport then ends the agent)."""

    def drop(self) -> None:
        """End the agent now, whatever it is doing (the session is given up)."""

    def close(self) -> None:
        """The run is over and no request is in flight: let the agent end its own way."""


class _Ended(Exception):
    """The session's agent had ended before this request (its output ended, or its pipe was
    gone: ``lost`` is then the transport's own error)."""

    def __init__(self, lost: NodeError | None = None):
        super().__init__()
        self.lost = lost


class AgentSession:
    """One agent process per node for the run: request after request on its stdin.

    The one place for the controller's side of "Sessions" in PROTOCOL.md, used by WinRM and
    SSH to Windows. A request goes to the running agent (one is started for the first
    request, and again after the session was dropped); its answer is read up to the result
    line. The session is dropped on a timeout, a lost connection, an answer it cannot read,
    or a release given up on. A request that finds its agent ended is ``connection-lost``
    (:data:`AGENT_ENDED`), and :data:`RETRIED_OPS` are then sent once to a fresh agent.

    An armed commit holds its agent until it is released and answered, or aborted. A request
    made meanwhile (a rollback's fence while a commit is held) goes to a fresh agent, and the
    armed one is ended once its commit is settled.
    """

    def __init__(
        self, host: str, open_channel: Callable[[str], AgentChannel], timeout: float
    ) -> None:
        self.host = host
        self.timeout = timeout
        self._open_channel = open_channel
        self._channel: AgentChannel | None = None
        self._armed: SessionArmedCommit | None = None  # holds self._channel until settled
        self._detached: list[SessionArmedCommit] = []
        self.agents_started = 0

    # --- requests -------------------------------------------------------------------
    def request(self, op: str, args: Mapping[str, Any], phase: str | None = None) -> dict[str, Any]:
        """One request, its ``result`` (or the NodeError it answers)."""
        phase = phase or op
        line = request_line(op, args)
        try:
            reader = self._exchange(line, phase, arming=False)
        except _Ended as ended:
            if op not in RETRIED_OPS:
                raise ended.lost or self._ended(phase) from None
            log.info("%s %s: %s; asking a fresh one", self.host, phase, AGENT_ENDED)
            try:
                reader = self._exchange(line, phase, arming=False)
            except _Ended as again:  # a fresh agent is never "already ended": defensive
                raise again.lost or self._ended(phase) from None
        return parse_output(reader.output, host=self.host, phase=phase, stderr=reader.stderr)

    def arm(self, op: str, args: Mapping[str, Any], phase: str = "commit") -> SessionArmedCommit:
        """Send a ``commit`` or ``stage_commit`` and read up to its ``armed`` line."""
        try:
            reader = self._exchange(request_line(op, args), phase, arming=True)
        except _Ended as ended:
            raise ended.lost or self._ended(phase) from None
        if not reader.armed:
            # The checks failed (CHANGED...): the answer is the error.
            parse_output(reader.output, host=self.host, phase=phase, stderr=reader.stderr)
            self.drop()  # answered ok without arming: not the protocol
            raise NodeError(
                self.host, NodeErrorKind.PROTOCOL, "the agent answered without arming", phase=phase
            )
        if self._channel is None:  # armed, then ended in the same answer: nothing holds it
            raise self._ended(phase)
        self._armed = SessionArmedCommit(self, self._channel, reader, op, phase)
        return self._armed

    def close(self) -> None:
        """The run is over: an agent holding a commit released and never answered is
        ended; otherwise the agent is let go the transport's way (SSH: EOF)."""
        for held in self._detached:
            held.channel.drop()
        self._detached.clear()
        armed, channel = self._armed, self._channel
        self._armed, self._channel = None, None
        if channel is None:
            return
        if armed is not None and armed.released and not armed.done:
            channel.drop()
        else:
            channel.close()

    def drop(self) -> None:
        """Give the session up: the agent is ended, the next request starts a fresh one."""
        channel, self._channel, self._armed = self._channel, None, None
        if channel is not None:
            channel.drop()

    # --- the exchange ---------------------------------------------------------------
    def _exchange(self, line: bytes, phase: str, *, arming: bool) -> _Reader:
        if self._armed is not None:  # a commit holds this agent: ask a fresh one
            self._detached.append(self._armed)
            self._armed, self._channel = None, None
        reused = self._channel is not None
        if self._channel is None:
            self._channel = self._open_channel(phase)
            self.agents_started += 1
        channel = self._channel
        reader = _Reader()
        try:
            channel.send(line, phase)
            got = channel.receive(
                time.monotonic() + self.timeout,
                reader.until_armed if arming else reader.until_result,
                phase,
            )
        except NodeError as exc:
            self.drop()
            if reused and exc.kind is NodeErrorKind.CONNECTION_LOST:
                raise _Ended(exc) from None  # the agent's pipe was gone before this request
            raise
        except BaseException:
            self.drop()
            raise
        reader.stderr += got.stderr
        if not _usable(reader, got.ended):
            self.drop()
            if got.ended and not (reader.finished or reader.armed) and reused:
                raise _Ended
            # A fresh agent that ended without a word, or an answer we cannot read: the
            # caller's parse_output names it (quoting stderr).
        elif got.ended:
            self._channel = None  # answered, then ended (a broken frame): start afresh
        return reader

    def _ended(self, phase: str) -> NodeError:
        return NodeError(self.host, NodeErrorKind.CONNECTION_LOST, AGENT_ENDED, phase=phase)

    # --- the armed commit's steps -----------------------------------------------------
    def _release(self, armed: SessionArmedCommit) -> None:
        armed.released = True
        try:
            armed.channel.send(COMMIT_WORD, armed.phase)
        except BaseException:
            self._settled(armed, keep=False)
            raise

    def _answer(self, armed: SessionArmedCommit, word: bytes | None, timeout: float) -> Any:
        """Send ``word`` (if any), read the commit's result line; its result or error."""
        armed.done = True
        reader = armed.reader
        try:
            if word is not None:
                armed.channel.send(word, armed.phase)
            got = armed.channel.receive(
                time.monotonic() + timeout, reader.until_result, armed.phase
            )
        except BaseException:
            self._settled(armed, keep=False)
            raise
        reader.stderr += got.stderr
        self._settled(armed, keep=reader.finished and reader.well_formed and not got.ended)
        if got.ended and not reader.finished:
            raise self._ended(armed.phase)  # killed, or ended on its own, before answering
        return parse_output(reader.output, host=self.host, phase=armed.phase, stderr=reader.stderr)

    def _settled(self, armed: SessionArmedCommit, *, keep: bool) -> None:
        """The armed commit's agent is free again (``keep``) or given up."""
        if armed in self._detached:  # another agent serves the session now
            self._detached.remove(armed)
            armed.channel.drop()
        elif self._armed is armed:
            self._armed = None
            if not keep:
                self.drop()


def _usable(reader: ArmedReader, ended: bool) -> bool:
    """Whether the agent gave an answer the session can go on from."""
    if reader.finished:
        return reader.well_formed
    return reader.armed and not ended


class _Reader(ArmedReader):
    """An ArmedReader that also keeps the request's stderr (diagnostics for errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.stderr = b""


class SessionArmedCommit(ArmedCommit):
    """A ``commit`` or ``stage_commit`` armed in a session: ``release`` is one write of the
    word; ``wait`` reads the answer (for ``stage_commit``: the post-commit states the node
    read, and whether it cleaned up); ``abort`` withdraws it, and the session goes on."""

    def __init__(
        self, session: AgentSession, channel: AgentChannel, reader: _Reader, op: str, phase: str
    ):
        self.session = session
        self.channel = channel
        self.reader = reader
        self.op = op
        self.phase = phase
        self.released = False
        self.done = False
        self.cleaned_up = False

    def release(self) -> None:
        if self.released or self.done:
            raise RuntimeError("this commit was already released or settled")
        self.session._release(self)

    def wait(self, timeout: float) -> dict[str, FileState] | None:
        if self.done:
            raise RuntimeError("this commit was already settled")
        result = self.session._answer(self, None, timeout)
        if self.op != "stage_commit":
            return None
        warnings = result.get("warnings")
        self.cleaned_up = not (
            isinstance(warnings, list)
            and any(isinstance(w, str) and w.startswith("cleanup:") for w in warnings)
        )
        return verify_states(result, host=self.session.host)

    def abort(self) -> None:
        if self.done:
            return
        if self.released:  # released and never answered: give its agent up
            self.done = True
            self.session._settled(self, keep=False)
            return
        self.session._answer(self, ABORT_WORD, self.session.timeout)
