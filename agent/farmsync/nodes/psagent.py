"""Controller side of the node agent protocol (PROTOCOL.md), shared by the transports that
drive PowerShell nodes (WinRM, SSH with a PowerShell shell).

One fixed command line starts ``powershell.exe`` with a small bootstrap; everything that
varies (the op script, its arguments, file contents) travels on stdin as one base64 request
line, so nothing secret or large ever reaches a command line (cmd.exe stops at 8,191 chars)
or a process environment. This module builds that line and the per-op arguments, and turns
the node's JSON-lines output back into results or :class:`NodeError` - the one place for it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes.auditread import AuditRead, AuditRequest, read_from_json
from farmsync.nodes.clixml import decode_stderr
from farmsync.nodes.contract import ArmedCommit, CommitItem, FileState, FileStatus, StageItem
from farmsync.nodes.protocol import COMMIT_WORD as _WORD
from farmsync.nodes.protocol import OPS, PROTOCOL_VERSION, ps1_fragment

log = logging.getLogger(__name__)

CMD_EXE_LIMIT = 8191  # longest command line cmd.exe accepts
MAX_CHUNK = 512 * 1024  # stdin bytes per SSH channel write (WinRM sends winrm_shell.SEND_CHUNK)
COMMIT_WORD = _WORD.encode("ascii") + b"\r\n"
ABORT_WORD = b"ABORT\r\n"
POWERSHELL_ARGS = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass"


def resource_text(name: str) -> str:
    """Text of one ``scripts/<name>`` package resource."""
    return resources.files("farmsync.nodes").joinpath("scripts", name).read_text("utf-8")


def load_script(op: str) -> str:
    """The script sent for ``op``: its argument table generated from protocol.py, the shared
    functions of common.ps1, then the op's own. Fixed text: no request data is in it."""
    if op not in OPS:
        raise ValueError(f"unknown node op {op!r}")
    text = ps1_fragment(op) + resource_text("common.ps1") + "\n" + resource_text(f"{op}.ps1")
    return _compact(text)


BOOTSTRAP = resource_text("bootstrap.ps1")


def _compact(script: str) -> str:
    """Drop comment lines, blank lines and indentation, keeping here-string bodies as they
    are: a third less to send and to compile with every request, the same code
    (tests/nodes/test_ps1_syntax.py compares the tokens of both)."""
    kept: list[str] = []
    closer: str | None = None  # the line that ends the here-string we are in
    for line in script.splitlines():
        if closer is not None:
            kept.append(line)
            if line.startswith(closer):
                closer = None
            continue
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kept.append(line)
        if line.endswith(("@'", '@"')):
            closer = line[-1] + "@"
    return "\n".join(kept)


def encoded_bootstrap() -> str:
    return base64.b64encode(_compact(BOOTSTRAP).encode("utf-16-le")).decode("ascii")


def command_line() -> str:
    """The one command line for every op: the same bytes whatever the paths or contents."""
    return f"{POWERSHELL_ARGS} -EncodedCommand {encoded_bootstrap()}"


def request_line(op: str, args: Mapping[str, Any]) -> bytes:
    """Line 1 of stdin: base64 of the UTF-8 JSON request carrying script and args."""
    request = {"v": PROTOCOL_VERSION, "op": op, "script": load_script(op), "args": dict(args)}
    body = json.dumps(request, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(body) + b"\r\n"


def decode_request_line(line: bytes) -> dict[str, Any]:
    """Inverse of :func:`request_line` (tests, and servers standing in for PowerShell)."""
    decoded: dict[str, Any] = json.loads(base64.b64decode(line.strip(), validate=True))
    return decoded


def iter_chunks(data: bytes, size: int = MAX_CHUNK) -> Iterator[bytes]:
    """Split stdin bytes into sends of at most ``size`` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --- output -------------------------------------------------------------------------------


def _json_lines(stdout: bytes) -> list[Any]:
    """Every line of stdout that parses as JSON (PowerShell may add a BOM or blank lines)."""
    found: list[Any] = []
    for raw in stdout.splitlines():
        line = raw.strip().lstrip(b"\xef\xbb\xbf")
        if not line.startswith(b"{"):
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _is_result(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("ok"), bool)


def _kind(value: Any) -> NodeErrorKind:
    try:
        return NodeErrorKind(value)
    except ValueError:
        return NodeErrorKind.REMOTE


def parse_output(
    stdout: bytes, *, host: str = "node", phase: str | None = None, stderr: bytes = b""
) -> dict[str, Any]:
    """The ``result`` object of the node's final JSON line, or the NodeError it reports.

    Output without a result line is a PROTOCOL error; its detail quotes the start of stderr
    (diagnostics, e.g. "powershell.exe is not recognized") but never stdout, which may carry
    file contents.
    """
    results = [obj for obj in _json_lines(stdout) if _is_result(obj)]
    if not results:
        hint = decode_stderr(stderr).strip().splitlines()
        detail = "no result from the node agent"
        if hint:
            detail += f" (stderr: {hint[0][:200]})"
        raise NodeError(host, NodeErrorKind.PROTOCOL, detail, phase=phase)
    final = results[-1]
    if final["ok"]:
        result = final.get("result")
        if not isinstance(result, dict):
            raise NodeError(host, NodeErrorKind.PROTOCOL, "result is not an object", phase=phase)
        report_warnings(result, host=host, phase=phase)
        return result
    error = final.get("error") if isinstance(final.get("error"), dict) else {}
    path = error.get("path")
    raise NodeError(
        host,
        _kind(error.get("kind")),
        str(error.get("detail") or "the node agent failed"),
        phase=phase,
        path=path if isinstance(path, str) and path else None,
    )


def report_warnings(result: Mapping[str, Any], *, host: str, phase: str | None) -> None:
    """Log the answer's ``warnings`` (retries, skipped pools) for the operator."""
    warnings = result.get("warnings")
    if isinstance(warnings, list):
        for text in warnings:
            if isinstance(text, str):
                log.warning("%s %s: %s", host, phase or "node", text[:300])


class ArmedReader:
    """Watches one request's stdout as it arrives for the ``{"armed": true}`` line and the
    result line (the one line scanner of the controller).

    Feed it every chunk read from the node; ``armed`` turns true on the armed line, and
    ``finished`` when a result line arrived (for a commit before ``armed``: the arm-time
    checks failed, and :func:`parse_output` on ``output`` raises the node's error).
    ``well_formed`` says whether that result line is an answer the controller can read.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._scanned = 0
        self.armed = False
        self.finished = False
        self.well_formed = False

    def feed(self, chunk: bytes) -> bool:
        self._data += chunk
        end = self._data.rfind(b"\n")
        if end >= self._scanned:
            for obj in _json_lines(bytes(self._data[self._scanned : end + 1])):
                if isinstance(obj, dict) and obj.get("armed") is True:
                    self.armed = True
                elif _is_result(obj):
                    self.finished = True
                    key = "result" if obj["ok"] else "error"
                    self.well_formed = isinstance(obj.get(key), dict)
            self._scanned = end + 1
        return self.armed

    def until_result(self, chunk: bytes) -> bool:
        """``feed``, then whether the request is answered (for a receive loop's ``until``)."""
        self.feed(chunk)
        return self.finished

    def until_armed(self, chunk: bytes) -> bool:
        """``feed``, then whether the commit is armed or answered without arming."""
        self.feed(chunk)
        return self.armed or self.finished

    @property
    def output(self) -> bytes:
        return bytes(self._data)


# --- per-op arguments and results -----------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_args(paths: Sequence[str]) -> dict[str, Any]:
    return {"paths": list(paths)}


def stage_args(items: Sequence[StageItem], run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "items": [
            {
                "path": i.path,
                "content_b64": _b64(i.new_content),
                "expected_sha256": i.expected_sha256,
            }
            for i in items
        ],
    }


def commit_args(items: Sequence[CommitItem], run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "items": [
            {"path": i.path, "expected_sha256": i.expected_sha256, "staged_sha256": i.staged_sha256}
            for i in items
        ],
    }


def rollback_args(
    paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
) -> dict[str, Any]:
    # Always sent: every argument of the protocol table is required ({}: no originals known).
    return {"run_id": run_id, "paths": list(paths), "expected": dict(expected or {})}


def cleanup_args(paths: Sequence[str], run_id: str, keep_backups: int) -> dict[str, Any]:
    return {"run_id": run_id, "paths": list(paths), "keep_backups": keep_backups}


def list_backups_args(paths: Sequence[str]) -> dict[str, Any]:
    return {"paths": list(paths)}


def audit_args(request: AuditRequest) -> dict[str, Any]:
    return request.to_json()


def audit_from_result(result: Mapping[str, Any], *, host: str = "node") -> AuditRead:
    return read_from_json(result, files_from_result(result, host=host), host)


def recycle_args(spec: RecycleSpec) -> dict[str, Any]:
    return {"kind": spec.kind.value, "command": spec.command, "app_pools": list(spec.app_pools)}


def _protocol(host: str, phase: str, what: str) -> NodeError:
    detail = f"malformed {what} in the node's answer"
    return NodeError(host, NodeErrorKind.PROTOCOL, detail, phase=phase)


def file_state(entry: Any, *, host: str = "node", content: bool = True) -> FileState:
    """One FileState from a ``read`` result entry (``content=False``: a ``stage_commit``
    verify entry, which carries the hash, mtime and file id but no bytes)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _protocol(host, "read", "file entry")
    path: str = entry["path"]
    try:
        status = FileStatus(str(entry.get("status")))
        if status is FileStatus.OK:
            data = base64.b64decode(entry["content_b64"], validate=True) if content else None
            mtime = entry.get("mtime")
            ident = entry.get("file_id")
            return FileState(
                path,
                status,
                data,
                str(entry["sha256"]).lower(),
                float(mtime) if mtime is not None else None,
                file_id=ident if isinstance(ident, str) and ident else None,
            )
    except (KeyError, ValueError, TypeError):
        raise _protocol(host, "read", "file entry") from None
    if status is FileStatus.MISSING:
        return FileState(path, status)
    return FileState(
        path, status, error_kind=_kind(entry.get("error_kind")), error=str(entry.get("error"))
    )


def files_from_result(result: Mapping[str, Any], *, host: str = "node") -> dict[str, FileState]:
    files = result.get("files")
    if not isinstance(files, list):
        raise _protocol(host, "read", "file list")
    states = (file_state(entry, host=host) for entry in files)
    return {state.path: state for state in states}


def machine_id_from_result(result: Mapping[str, Any]) -> str | None:
    """The machine id a ``read`` reports (Windows: MachineGuid), if any."""
    value = result.get("machine_id")
    return value.lower() if isinstance(value, str) and value else None


def backups_from_result(result: Mapping[str, Any], *, host: str = "node") -> dict[str, list[str]]:
    backups = result.get("backups")
    if not isinstance(backups, dict) or not all(
        isinstance(v, list) and all(isinstance(r, str) for r in v) for v in backups.values()
    ):
        raise _protocol(host, "list_backups", "backup list")
    return {str(path): list(run_ids) for path, run_ids in backups.items()}


def stage_commit_args(
    items: Sequence[tuple[StageItem, CommitItem]], run_id: str, keep_backups: int
) -> dict[str, Any]:
    """One ``stage_commit`` request: each item's new content and both hashes."""
    return {
        "run_id": run_id,
        "items": [
            {
                "path": s.path,
                "content_b64": _b64(s.new_content),
                "expected_sha256": s.expected_sha256,
                "staged_sha256": c.staged_sha256,
            }
            for s, c in items
        ],
        "keep_backups": keep_backups,
    }


def verify_states(result: Mapping[str, Any], *, host: str = "node") -> dict[str, FileState]:
    """The post-commit states a ``stage_commit`` answer reports (``files``, no content)."""
    files = result.get("files")
    if not isinstance(files, list):
        raise _protocol(host, "commit", "file list")
    states = (file_state(entry, host=host, content=False) for entry in files)
    return {state.path: state for state in states}


# --- sessions: one agent process per node per run (PROTOCOL.md, "Sessions") ----------------

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
        assert self._channel is not None  # armed: the agent is there and waits for the word
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
