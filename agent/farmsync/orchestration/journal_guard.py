"""What a journal record may hold: its vocabulary, a whitelist of fields, and the secrecy guard.

Records are checked against a whitelist of fields and types, and no string in a structured
field may contain a run of 32 or more hex digits (key material looks like that: validationKey
is 64-128 hex, decryptionKey 16-64). Structured fields that break the rule are refused
(:class:`JournalRecordError`); free text (``detail``) has such runs replaced by ``<redacted>``
instead, because error messages from nodes are not under our control and a journal write must
not fail in the middle of a commit. File hashes are 64 hex digits, so they go in the dedicated
fields ``old_sha256``/``new_sha256``/``live_sha256``, which accept exactly a lowercase SHA-256
and nothing else. An AES-256 decryptionKey has the same shape as a hash, so callers also
register the run's keys with :meth:`RecordGuard.forbid`: a registered value is refused in
every field, hash fields included.

The same check runs on every line read back, so a record the writer would have refused (a
run-start without ``kind``, say) is a damaged line, never a run state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum


class RunKind(StrEnum):
    ROTATE = "rotate"
    SYNC = "sync"
    ROLLBACK = "rollback"
    RESTORE = "restore"
    RECOVER = "recover"


class Step(StrEnum):
    """What a journal record is about. Not :class:`~farmsync.orchestration.events.Phase`: the
    journal is a file format that old journals must still be read in, so its values never
    change, and it has steps no progress display shows (run-start, accept, run-end), while
    phases are for people and have no record (connect, plan)."""

    RUN_START = "run-start"
    READ = "read"
    STAGE = "stage"
    ARM = "arm"
    COMMIT = "commit"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    CLEANUP = "cleanup"
    RECYCLE = "recycle"
    ACCEPT = "accept"  # the operator took a file as it is as the run's outcome (recover)
    RUN_END = "run-end"


class StepResult(StrEnum):
    STARTED = "started"  # intent, written before the action (commit, rollback)
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class JournalRecordError(ValueError):
    """A record that may not be journaled (unknown field, wrong type, looks like key material).

    The message names the field, never the value.
    """


KEY_MATERIAL_HEX_RUN = 32
_HEX_RUN = re.compile(rf"[0-9A-Fa-f]{{{KEY_MATERIAL_HEX_RUN},}}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DETAIL_MAX = 2000
DETAIL_MAX_BYTES = 2048  # a detail's size in the journal, escapes included (see reserve)
REDACTED = "<redacted>"


# --- the whitelist -----------------------------------------------------------------------


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _one_of(enum: type[StrEnum]) -> Callable[[object], bool]:
    values = {e.value for e in enum}
    return lambda v: isinstance(v, str) and v in values


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and bool(_SHA256.match(v))


def is_run_id(v: object) -> bool:
    return isinstance(v, str) and bool(_RUN_ID.match(v))


def _is_host_map(v: object) -> bool:
    return isinstance(v, dict) and all(
        isinstance(h, str) and isinstance(ps, list) and all(isinstance(p, str) for p in ps)
        for h, ps in v.items()
    )


_FIELDS: dict[str, Callable[[object], bool]] = {
    "ts": _is_str,
    "run_id": is_run_id,
    "kind": _one_of(RunKind),
    "event": _one_of(Step),
    "result": _one_of(StepResult),
    "host": _is_str,
    "path": _is_str,
    "old_fp": _is_str,
    "new_fp": _is_str,
    "old_sha256": _is_sha256,
    "new_sha256": _is_sha256,
    "live_sha256": _is_sha256,  # what a file held when the operator accepted it
    "error_kind": _is_str,
    "detail": _is_str,
    "elapsed_ms": _is_count,
    # run-start only
    "target_fp": _is_str,
    "previous_fp": _is_str,
    "hosts": _is_host_map,  # host -> the paths this run manages on it
    "controller": _is_str,
    "pid": _is_count,
}
_REQUIRED = ("ts", "run_id", "kind", "event")
_HASH_FIELDS = frozenset({"old_sha256", "new_sha256", "live_sha256"})
_FREE_TEXT = frozenset({"detail"})


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# --- the guard ---------------------------------------------------------------------------


class RecordGuard:
    """Checks records against the whitelist and keeps registered key material out of them."""

    def __init__(self) -> None:
        self._forbidden: set[str] = set()

    def forbid(self, *values: str) -> None:
        """Refuse any record containing one of ``values`` (the run's key material)."""
        for v in values:
            if v:
                self._forbidden.add(v.lower())

    def _contains_forbidden(self, text: str) -> bool:
        low = text.lower()
        return any(secret in low for secret in self._forbidden)

    def _redact(self, text: str) -> str:
        text = _HEX_RUN.sub(REDACTED, text)
        for secret in self._forbidden:
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
        if len(text) > _DETAIL_MAX:
            text = text[: _DETAIL_MAX - 3] + "..."
        # Characters outside ASCII, and escaped controls, take more than one byte each.
        while len(json.dumps(text, ensure_ascii=False).encode()) > DETAIL_MAX_BYTES:
            text = text[: len(text) * 3 // 4] + "..."
        return text

    def validate(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record as it will be written; raises JournalRecordError if it may not be."""
        clean: dict[str, object] = {}
        for name, value in record.items():
            if value is None or (value == "" and name in _HASH_FIELDS):
                continue  # absent, None and "no hash" mean the same; keep lines short
            check = _FIELDS.get(name)
            if check is None:
                raise JournalRecordError(f"journal field {name!r} is not allowed")
            if name in _FREE_TEXT and isinstance(value, str):
                value = self._redact(value)
            if not check(value):
                raise JournalRecordError(f"journal field {name!r} has a wrong type or format")
            for text in _strings(value):
                if self._contains_forbidden(text):
                    raise JournalRecordError(f"journal field {name!r} contains key material")
                if name not in _HASH_FIELDS and _HEX_RUN.search(text):
                    raise JournalRecordError(
                        f"journal field {name!r} looks like key material "
                        f"({KEY_MATERIAL_HEX_RUN}+ hex digits)"
                    )
            clean[name] = value
        for name in _REQUIRED:
            if name not in clean:
                raise JournalRecordError(f"journal record lacks {name!r}")
        return clean
