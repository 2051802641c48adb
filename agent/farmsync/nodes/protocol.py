"""The node protocol's one table: every op and the type of each of its arguments.

PROTOCOL.md describes the protocol in prose; this module is the part both agents check
against. The Python twin (``agent.py``) validates each request with :func:`check_args`; the
PowerShell agent gets the same table as a generated, data-free ``.ps1`` fragment
(:func:`ps1_fragment`, sent ahead of ``common.ps1``) that ``Assert-FarmsyncArguments`` reads;
the static tests check that each ``<op>.ps1`` reads exactly the arguments listed here.

Types are the JSON ones: ``string``, ``string?`` (a string or null), ``int`` (a JSON integer,
never a boolean), ``bool``, ``string[]`` (a list of strings), ``string{}`` (an object whose
values are strings) and ``items`` (a list of objects whose fields are typed by
:data:`ITEM_FIELDS` for that op). Every argument is required: a missing one is a protocol
error on both sides, never a default (``keep_backups`` missing must not mean 0 and delete
every backup).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from farmsync.errors import NodeErrorKind

PROTOCOL_VERSION = 1

STRING, OPTIONAL_STRING, INT, BOOL = "string", "string?", "int", "bool"
STRING_LIST, STRING_MAP, ITEMS = "string[]", "string{}", "items"
TYPES = (STRING, OPTIONAL_STRING, INT, BOOL, STRING_LIST, STRING_MAP, ITEMS)

# op -> argument -> type. Order: the order of the ops in PROTOCOL.md.
OP_ARGS: Mapping[str, Mapping[str, str]] = {
    "read": {"paths": STRING_LIST},
    "stage": {"run_id": STRING, "items": ITEMS},
    "commit": {"run_id": STRING, "items": ITEMS},
    "stage_commit": {"run_id": STRING, "items": ITEMS, "keep_backups": INT},
    "rollback": {"run_id": STRING, "paths": STRING_LIST, "expected": STRING_MAP},
    "cleanup": {"run_id": STRING, "paths": STRING_LIST, "keep_backups": INT},
    "list_backups": {"paths": STRING_LIST},
    "recycle": {"kind": STRING, "command": OPTIONAL_STRING, "app_pools": STRING_LIST},
    "doctor": {"paths": STRING_LIST},
    "audit": {"paths": STRING_LIST, "scan_dirs": STRING_LIST, "iis": BOOL, "windows_facts": BOOL},
}

# op -> field of each entry of its ``items`` argument -> type.
ITEM_FIELDS: Mapping[str, Mapping[str, str]] = {
    "stage": {"path": STRING, "content_b64": STRING, "expected_sha256": STRING},
    "commit": {"path": STRING, "expected_sha256": STRING, "staged_sha256": STRING},
    "stage_commit": {
        "path": STRING,
        "content_b64": STRING,
        "expected_sha256": STRING,
        "staged_sha256": STRING,
    },
}

OPS: tuple[str, ...] = tuple(OP_ARGS)

# The word that releases an armed commit: compared exactly (case-sensitive) on both sides.
COMMIT_WORD = "COMMIT"

# Win32 errors on which the replace of a live file is retried: a reader (antivirus, backup
# agent, IIS reading its configuration) holds the file for a moment.
BUSY_WIN32_ERRORS = (32, 33, 1175, 1176)  # sharing, lock, unable to remove/delete replaced
REPLACE_ATTEMPTS = 8
REPLACE_FIRST_DELAY = 0.05  # seconds, doubled after each busy attempt (6.35 s at most)


class ArgumentError(Exception):
    """A request's arguments do not match the table (always a PROTOCOL error)."""

    kind = NodeErrorKind.PROTOCOL


def type_ok(value: Any, kind: str) -> bool:
    """Whether ``value`` (decoded JSON) has protocol type ``kind`` (items: entries only)."""
    if kind == STRING:
        return isinstance(value, str)
    if kind == OPTIONAL_STRING:
        return value is None or isinstance(value, str)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == STRING_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == STRING_MAP:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == ITEMS:
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    raise ValueError(f"unknown protocol type {kind!r}")


def mismatch(name: str, kind: str) -> str:
    """The one wording of a type error (the PowerShell agent uses the same)."""
    return f"argument '{name}' missing or not {kind}"


def check_args(op: str, args: Mapping[str, Any]) -> None:
    """Raise :class:`ArgumentError` unless ``args`` fit the table's row for ``op``."""
    for name, kind in OP_ARGS[op].items():
        value = args.get(name)
        if not type_ok(value, kind):
            raise ArgumentError(mismatch(name, kind))
        if kind == ITEMS and isinstance(value, list):
            for entry in value:
                for field, field_kind in ITEM_FIELDS[op].items():
                    if not type_ok(entry.get(field), field_kind):
                        raise ArgumentError(mismatch(f"items.{field}", field_kind))


def _ps_table(table: Mapping[str, str]) -> str:
    return "@{ " + "; ".join(f"'{name}' = '{kind}'" for name, kind in table.items()) + " }"


def ps1_fragment(op: str) -> str:
    """The table's row for ``op`` as PowerShell: two fixed hashtables, no request data."""
    return (
        "# Generated from farmsync/nodes/protocol.py: the argument types of this op.\n"
        f"$FarmsyncArgumentTypes = {_ps_table(OP_ARGS[op])}\n"
        f"$FarmsyncItemTypes = {_ps_table(ITEM_FIELDS.get(op, {}))}\n"
    )
