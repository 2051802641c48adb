"""Building audit models from data: a node's answer as files and facts, no server needed
(the rules are pure; the real-server tests are in tests/nodes and tests/lab)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from farmsync.errors import NodeErrorKind
from farmsync.inventory.model import Host, Policy, Shell, Transport
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.nodes.auditread import AuditRead, IisFiles, RsaContainer
from farmsync.nodes.contract import FileState, FileStatus
from farmsync.orchestration.audit.expected import from_majority
from farmsync.orchestration.audit.model import AuditModel, Expected, Finding, NodeModel
from farmsync.orchestration.audit.resolve import resolve_node
from farmsync.orchestration.audit.rules import RULES

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ROOT = "/srv/{host}/etc/mono/4.5/web.config"
APP = "/srv/{host}/www/app/web.config"
UNREADABLE = object()


def hexkey(nbytes: int) -> str:
    return secrets.token_hex(nbytes).upper()


def config(body: str = "", key: str | None = None, *, lock: bool = False) -> bytes:
    """A web.config whose system.web holds ``key`` (a machineKey element) and ``body``."""
    element = key or ""
    if lock and key:
        return (
            '<?xml version="1.0"?>\n<configuration>\n<location allowOverride="false">\n'
            f"<system.web>\n{element}\n{body}\n</system.web>\n</location>\n</configuration>\n"
        ).encode()
    return (
        f'<?xml version="1.0"?>\n<configuration>\n<system.web>\n{element}\n{body}\n'
        "</system.web>\n</configuration>\n"
    ).encode()


def machine_key(v: str, d: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{val}"' for k, val in attrs.items())
    return f'<machineKey validationKey="{v}" decryptionKey="{d}"{extra} />'


def host(name: str, *, windows: bool = False, apps: tuple[str, ...] = (), **kw: Any) -> Host:
    roots = kw.pop("roots", () if windows else (ROOT.format(host=name),))
    return Host(
        name=name,
        farm="f",
        transport=Transport.LOCAL,
        address=name,
        port=22,
        shell=Shell.POWERSHELL if windows else Shell.POSIX,
        root_configs=tuple(roots),
        app_configs=apps,
        policy=kw.pop("policy", Policy()),
        **kw,
    )


def state(path: str, content: Any) -> FileState:
    if content is None:
        return FileState(path, FileStatus.MISSING)
    if content is UNREADABLE:
        return FileState(
            path,
            FileStatus.ERROR,
            error_kind=NodeErrorKind.PERMISSION,
            error="cannot read: Permission denied",
        )
    data = content if isinstance(content, bytes) else content.encode()
    return FileState(path, FileStatus.OK, data, hashlib.sha256(data).hexdigest(), 0.0)


def node(
    h: Host,
    files: Mapping[str, Any],
    *,
    leftovers: Mapping[str, tuple[str, ...]] | None = None,
    subfolders: Mapping[str, tuple[str, ...]] | None = None,
    registry: Mapping[str, int | None] | None = None,
    rsa: Mapping[str, RsaContainer] | None = None,
    iis: IisFiles | None = None,
    facts_error: str | None = None,
) -> NodeModel:
    read = AuditRead(
        {p: state(p, c) for p, c in files.items()},
        dict(leftovers or {}),
        dict(subfolders or {}),
        iis,
        {},
        registry,
        rsa,
        facts_error,
    )
    return resolve_node(h, read, 1)


def model(
    *nodes: NodeModel,
    expected: Expected | None = None,
    max_age: float | None = None,
    disclosed: DisclosedKeys | None = None,
) -> AuditModel:
    return AuditModel("f", list(nodes), expected or from_majority(nodes), max_age, NOW, disclosed)


def findings(rule_id: str, m: AuditModel) -> list[Finding]:
    return list(RULES[rule_id](m))


def farm_of(keys: Mapping[str, str]) -> list[NodeModel]:
    """POSIX nodes whose root web.config holds the given machineKey element each."""
    return [node(host(n), {ROOT.format(host=n): config(key=k)}) for n, k in keys.items()]
