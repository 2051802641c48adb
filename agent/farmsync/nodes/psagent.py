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
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes.agent import OPS, PROTOCOL_VERSION
from farmsync.nodes.auditread import AuditRead, AuditRequest, read_from_json
from farmsync.nodes.contract import CommitItem, FileState, FileStatus, StageItem

CMD_EXE_LIMIT = 8191  # longest command line cmd.exe accepts
MAX_CHUNK = 512 * 1024  # stdin bytes per SSH channel write (WinRM sends winrm_shell.SEND_CHUNK)
COMMIT_WORD = b"COMMIT\r\n"
ABORT_WORD = b"ABORT\r\n"
POWERSHELL_ARGS = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass"


def resource_text(name: str) -> str:
    """Text of one ``scripts/<name>`` package resource."""
    return resources.files("farmsync.nodes").joinpath("scripts", name).read_text("utf-8")


def load_script(op: str) -> str:
    """The script sent for ``op``: the shared functions of common.ps1, then the op's own."""
    if op not in OPS:
        raise ValueError(f"unknown node op {op!r}")
    return resource_text("common.ps1") + "\n" + resource_text(f"{op}.ps1")


BOOTSTRAP = resource_text("bootstrap.ps1")


def _compact(script: str) -> str:
    """Drop comment lines, blank lines and indentation (the bootstrap has no here-strings)."""
    lines = (line.strip() for line in script.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


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
        hint = stderr.decode("utf-8", "replace").strip().splitlines()
        detail = "no result from the node agent"
        if hint:
            detail += f" (stderr: {hint[0][:200]})"
        raise NodeError(host, NodeErrorKind.PROTOCOL, detail, phase=phase)
    final = results[-1]
    if final["ok"]:
        result = final.get("result")
        if not isinstance(result, dict):
            raise NodeError(host, NodeErrorKind.PROTOCOL, "result is not an object", phase=phase)
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


class ArmedReader:
    """Watches a commit's stdout as it arrives for the ``{"armed": true}`` line.

    Feed it every chunk read from the node; ``armed`` turns true on the armed line, and
    ``finished`` when a result line arrived instead (the arm-time checks failed): then
    :func:`parse_output` on ``output`` raises the node's error.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._scanned = 0
        self.armed = False
        self.finished = False

    def feed(self, chunk: bytes) -> bool:
        self._data += chunk
        end = self._data.rfind(b"\n")
        if end >= self._scanned:
            for obj in _json_lines(bytes(self._data[self._scanned : end + 1])):
                if isinstance(obj, dict) and obj.get("armed") is True:
                    self.armed = True
                elif _is_result(obj):
                    self.finished = True
            self._scanned = end + 1
        return self.armed

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
    args: dict[str, Any] = {"run_id": run_id, "paths": list(paths)}
    if expected:
        args["expected"] = dict(expected)
    return args


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


def file_state(entry: Any, *, host: str = "node") -> FileState:
    """One FileState from a ``read`` result entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _protocol(host, "read", "file entry")
    path: str = entry["path"]
    try:
        status = FileStatus(str(entry.get("status")))
        if status is FileStatus.OK:
            content = base64.b64decode(entry["content_b64"], validate=True)
            mtime = entry.get("mtime")
            ident = entry.get("file_id")
            return FileState(
                path,
                status,
                content,
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
