"""The one error tree of farmsync.

Every error carries structured fields so callers (and tests) can act on them without parsing
message text. No error ever carries key material: messages name files, hosts and
fingerprints only.
"""

from __future__ import annotations

import traceback
from enum import StrEnum
from pathlib import Path


class ExitCode:
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    NODE_FAILURE = 1  # finished, some node failed, farm left consistent
    BAD_INPUT = 2  # bad input or usage; nothing contacted or written
    CANNOT_START = 3  # lock held, unreachable nodes, unfinished run needing care
    INTERRUPTED = 130  # SIGINT or SIGTERM; the farm's state and the next command are printed


class FarmsyncError(Exception):
    """Base of every error farmsync raises on purpose."""

    exit_code: int = ExitCode.NODE_FAILURE


class InputError(FarmsyncError):
    """Bad input: inventory, playbook, web.config, command-line value.

    ``source`` is the file (or option) at fault and ``line`` its 1-based line when known.
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
            where += ": "
        return f"{where}{self.message}"


class ConfigFileError(InputError):
    """A web.config that cannot be parsed or safely edited (malformed, hostile, encrypted...)."""


class MachineKeyError(InputError):
    """An invalid machineKey (bad hex, wrong length for the algorithm, forbidden combination)."""


class VaultError(FarmsyncError):
    """The key vault cannot be opened or is not trustworthy.

    A wrong passphrase, a tampered file and a truncated file are deliberately one error:
    telling them apart would help an attacker and never helps an operator.
    """

    exit_code = ExitCode.BAD_INPUT


class LockHeldError(FarmsyncError):
    """Another run holds the farm's lock."""

    exit_code = ExitCode.CANNOT_START

    def __init__(self, farm: str, holder: str):
        self.farm = farm
        self.holder = holder
        super().__init__(f"farm {farm!r} is locked by {holder}")


class NodeErrorKind(StrEnum):
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    HOST_KEY = "host-key"
    TLS = "tls"
    TIMEOUT = "timeout"
    PERMISSION = "permission-denied"
    DISK_FULL = "disk-full"
    IS_DIRECTORY = "is-directory"
    NOT_REGULAR = "not-a-regular-file"  # a device, FIFO or socket at a managed path
    TOO_LARGE = "too-large"  # past the 8 MiB a web.config may have
    BACKUP_EXISTS = "backup-exists"  # a run's backup is never replaced: two paths, one file
    NOT_FOUND = "not-found"
    CHANGED = "changed-since-read"
    VERIFY = "verify-mismatch"
    QUOTA = "quota"
    PROTOCOL = "protocol"
    REMOTE = "remote-error"
    CONNECTION_LOST = "connection-lost"


class NodeError(FarmsyncError):
    """One node could not do what was asked.

    ``kind`` is the machine-readable category, ``detail`` a human explanation that never
    contains file contents or key material.
    """

    exit_code = ExitCode.NODE_FAILURE

    def __init__(
        self,
        host: str,
        kind: NodeErrorKind,
        detail: str,
        *,
        phase: str | None = None,
        path: str | None = None,
    ):
        self.host = host
        self.kind = kind
        self.detail = detail
        self.phase = phase
        self.path = path
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [self.host]
        if self.phase:
            parts.append(self.phase)
        head = " ".join(parts)
        where = f" {self.path}" if self.path else ""
        return f"{head}: {self.kind.value}{where}: {self.detail}"


def describe_error(exc: BaseException | None) -> str:
    """A safe one-line description of an error.

    farmsync's own errors are written to be shown. Anything else is a bug or a library
    surprise: name its type and where it was raised, never its text, which might quote file
    contents.
    """
    if exc is None:
        return ""
    if isinstance(exc, FarmsyncError):
        return str(exc)
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno}"
    return f"unexpected {type(exc).__name__}{where}"
