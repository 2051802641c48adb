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
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes.auditread import AuditRead, AuditRequest, read_from_json
from farmsync.nodes.clixml import decode_stderr
from farmsync.nodes.contract import CommitItem, FileState, FileStatus, StageItem
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
        # A line comment goes; a line that ends a block comment (``#>``) stays, or the
        # comment ``<#`` opened would swallow the rest of the script.
        if not line or (line.startswith("#") and "#>" not in line):
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
