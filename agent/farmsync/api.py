"""The public API for library users: everything a program needs to run farmsync.

    from farmsync import Farm

    farm = Farm.open("farm.yml", limit="web*")
    result = farm.rotate()

``Farm.open`` loads and checks the inventory (nothing is contacted); each command returns a
:class:`RunResult` whose ``outcome`` and ``exit_code`` mean what the command line's do. Errors
raised before a result exists are :class:`FarmsyncError` subclasses carrying ``exit_code``.
This module sits beside the command line, above orchestration: the package's top level
re-exports these names lazily, so ``import farmsync`` alone imports none of the layers.
"""

from __future__ import annotations

from farmsync.errors import (
    ConfigFileError,
    ExitCode,
    FarmsyncError,
    InputError,
    LockHeldError,
    MachineKeyError,
    NodeError,
    NodeErrorKind,
    VaultError,
)
from farmsync.keys.vault import VaultSecret
from farmsync.orchestration.audit import AuditOptions, AuditReport, Finding, Severity
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.result import FileResult, HostResult, Outcome, RunResult

__all__ = [
    "AuditOptions",
    "AuditReport",
    "ConfigFileError",
    "ExitCode",
    "Farm",
    "FarmsyncError",
    "FileResult",
    "Finding",
    "HostResult",
    "InputError",
    "LockHeldError",
    "MachineKeyError",
    "NodeError",
    "NodeErrorKind",
    "Outcome",
    "RolloutOptions",
    "RunResult",
    "Severity",
    "VaultError",
    "VaultSecret",
]
