"""``farmsync doctor``: a read-only preflight of every node, and what to fix before a rotation.

Per node: connect (which authentication, how the node's identity was checked), one ``doctor``
request (PROTOCOL.md), then rules over the answer. A rule that finds something a rotation
would trip over is a :class:`Problem` with a one-line fix, and the node is not ready; the
rest are notes. Nothing on a node is changed: the op only opens files for append without
writing and creates and removes a probe file beside each.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from farmsync.errors import ExitCode, NodeError, NodeErrorKind, describe_error
from farmsync.inventory.model import Host, RecycleKind, Shell
from farmsync.nodes.connect import node_for
from farmsync.orchestration.pool import run_each

MIN_POWERSHELL = (5, 1)
SKEW_WARNING_SECONDS = 60.0
FREE_SPACE_MARGIN = 1 << 20  # bytes beyond staging + backup copies of the file
UNREACHABLE = {NodeErrorKind.UNREACHABLE, NodeErrorKind.TIMEOUT, NodeErrorKind.CONNECTION_LOST}


class Readiness(StrEnum):
    READY = "ready"
    NOT_READY = "not-ready"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Problem:
    """Something that would stop a rotation on this node, and how to fix it."""

    what: str
    fix: str


@dataclass
class NodeReport:
    host: str
    status: Readiness
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status.value,
            **self.facts,
            "problems": [{"problem": p.what, "fix": p.fix} for p in self.problems],
            "notes": list(self.notes),
            "error": self.error,
            "error_kind": self.error_kind,
        }


def exit_code(reports: Iterable[NodeReport]) -> int:
    """0 every node ready, 1 some not ready, 3 some unreachable (the worst wins)."""
    statuses = {r.status for r in reports}
    if Readiness.UNREACHABLE in statuses:
        return ExitCode.CANNOT_START
    if Readiness.NOT_READY in statuses:
        return ExitCode.NODE_FAILURE
    return ExitCode.OK


# --- the rules --------------------------------------------------------------------------


def _version(text: Any) -> tuple[int, ...] | None:
    if not isinstance(text, str):
        return None
    parts = []
    for piece in text.split(".")[:2]:
        if not piece.isdigit():
            return None
        parts.append(int(piece))
    return tuple(parts)


def _file_problems(host: Host, entry: Mapping[str, Any]) -> list[Problem]:
    path = str(entry.get("path"))
    if not entry.get("exists"):
        fix = (
            "install .NET Framework 4 for that bitness, or drop the bitness from farmsync_bitness"
            if host.shell is Shell.POWERSHELL and not host.variables.get("farmsync_root_configs")
            else "fix the path in farmsync_root_configs"
        )
        return [Problem(f"{path} does not exist", fix)]
    if not entry.get("replaceable"):
        reason = str(entry.get("error") or "cannot be replaced")
        kind = entry.get("error_kind")
        if kind == NodeErrorKind.PERMISSION.value:
            fix = (
                f"give {host.user or 'the login'} write access to the file and its directory "
                "(and clear a read-only attribute or immutable flag)"
            )
        elif kind == NodeErrorKind.PROTOCOL.value:
            fix = "list the real file, not a link to it, in farmsync_root_configs"
        else:
            fix = "make the file a regular file its directory lets the login replace"
        return [Problem(f"{path}: {reason}", fix)]
    size, free = entry.get("size"), entry.get("free_bytes")
    if isinstance(size, int) and isinstance(free, int) and free < 2 * size + FREE_SPACE_MARGIN:
        return [Problem(f"{path}: only {free} bytes free on its volume", "free space there")]
    return []


def _shell_problems(answer: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    version = _version(answer.get("powershell"))
    if answer.get("powershell") is not None and (version is None or version < MIN_POWERSHELL):
        problems.append(
            Problem(
                f"PowerShell {answer.get('powershell')} is below 5.1",
                "install Windows Management Framework 5.1",
            )
        )
    dotnet = answer.get("dotnet")
    if isinstance(dotnet, str) and dotnet.startswith("older than"):
        problems.append(
            Problem(f".NET Framework {dotnet}", "install .NET Framework 4.6 or later (4.8)")
        )
    mode = answer.get("language_mode")
    if mode is not None and mode != "FullLanguage":
        problems.append(
            Problem(
                f"PowerShell runs in {mode} mode",
                "allow the login's powershell.exe FullLanguage in the AppLocker/WDAC policy",
            )
        )
    return problems


def _iis_problems(host: Host, answer: Mapping[str, Any]) -> list[Problem]:
    if host.recycle.kind is not RecycleKind.IIS:
        return []
    iis = answer.get("iis")
    if not isinstance(iis, Mapping) or not iis.get("installed"):
        return [
            Problem(
                "farmsync_recycle is iis but IIS is not installed", "set farmsync_recycle: none"
            )
        ]
    if iis.get("was") != "Running":
        return [
            Problem(
                f"the Windows Process Activation Service is {iis.get('was')}",
                "start it: Start-Service WAS",
            )
        ]
    names = {str(p.get("name", "")).lower() for p in iis.get("pools", []) if isinstance(p, Mapping)}
    missing = [p for p in host.recycle.app_pools if p.lower() not in names]
    if missing:
        return [
            Problem(
                f"no app pool named {', '.join(missing)}",
                "fix the pool names in farmsync_recycle",
            )
        ]
    return []


def evaluate(
    host: Host, answer: Mapping[str, Any], identity: Mapping[str, str], skew: float | None
) -> NodeReport:
    """The report for one node from its ``doctor`` answer."""
    problems: list[Problem] = []
    notes: list[str] = []
    files = [f for f in answer.get("files", []) if isinstance(f, Mapping)]
    for entry in files:
        problems += _file_problems(host, entry)
    problems += _shell_problems(answer)
    problems += _iis_problems(host, answer)
    if skew is not None and abs(skew) > SKEW_WARNING_SECONDS:
        notes.append(f"clock {skew:+.0f} s from the controller's (sync it: w32tm /resync)")
    verified = identity.get("verified", "")
    if "NOT verified" in verified or "nothing verified" in verified:
        notes.append(f"node identity: {verified}")
    iis = answer.get("iis")
    facts: dict[str, Any] = {
        "transport": host.transport.value,
        "auth": identity.get("auth"),
        "verified": verified or None,
        "os": answer.get("os"),
        "shell": host.shell.value,
        "agent": answer.get("agent"),
        "powershell": answer.get("powershell"),
        "dotnet": answer.get("dotnet"),
        "language_mode": answer.get("language_mode"),
        "fips": answer.get("fips"),
        "module_logging": answer.get("module_logging"),
        "script_block_logging": answer.get("script_block_logging"),
        "clock_skew_s": round(skew, 3) if skew is not None else None,
        "files": [dict(f) for f in files],
        "iis": dict(iis) if isinstance(iis, Mapping) else None,
    }
    status = Readiness.NOT_READY if problems else Readiness.READY
    return NodeReport(host.name, status, facts, problems, notes)


# --- running it -------------------------------------------------------------------------


def _failed(host: Host, exc: BaseException) -> NodeReport:
    if isinstance(exc, NodeError):
        status = Readiness.UNREACHABLE if exc.kind in UNREACHABLE else Readiness.NOT_READY
        report = NodeReport(host.name, status, {"transport": host.transport.value})
        report.error, report.error_kind = exc.detail, exc.kind.value
        if status is Readiness.NOT_READY:
            report.problems.append(Problem(f"{exc.kind.value}: {exc.detail}", _connect_fix(exc)))
        return report
    report = NodeReport(host.name, Readiness.NOT_READY, {"transport": host.transport.value})
    report.error = describe_error(exc)
    report.problems.append(Problem(report.error, "report this as a farmsync bug"))
    return report


def _connect_fix(exc: NodeError) -> str:
    return {
        NodeErrorKind.AUTH: "check ansible_user and the password or key for this host",
        NodeErrorKind.HOST_KEY: "check the node's host key, then add it to farmsync_known_hosts",
        NodeErrorKind.TLS: "trust the node's certificate: ansible_winrm_ca_trust_path",
        NodeErrorKind.QUOTA: "raise MaxShellsPerUser / MaxConcurrentOperationsPerUser",
    }.get(exc.kind, "see the error above")


def check_host(host: Host) -> NodeReport:
    """Connect, ask, evaluate. Never raises: a failure is the report."""
    node = node_for(host)
    try:
        node.connect()
        before = time.time()
        answer = node.doctor(host.root_configs)
        after = time.time()
        identity = node.login_facts()
    except Exception as exc:
        return _failed(host, exc)
    finally:
        node.close()
    node_time = answer.get("time")
    skew = float(node_time) - (before + after) / 2 if isinstance(node_time, int | float) else None
    return evaluate(host, answer, identity, skew)


def run_doctor(hosts: Sequence[Host], forks: int, timeout: float | None = None) -> list[NodeReport]:
    """Every host's report, in inventory order, at most ``forks`` at once."""
    chosen = [replace(h, timeout=timeout) if timeout else h for h in hosts]
    outcomes = run_each(((h.name, h) for h in chosen), lambda _, h: check_host(h), forks)
    return [
        outcome.value if outcome.value is not None else _failed(host, outcome.error or Exception())
        for host, outcome in zip(chosen, outcomes.values(), strict=True)
    ]
