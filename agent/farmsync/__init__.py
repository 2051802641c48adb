"""farmsync: keep the ASP.NET <machineKey> identical on every node of an IIS web farm.

Layers (lower never imports higher):
  errors                    the one error tree, importable everywhere
  inventory/                inventory, host variables and policy
  keys/, webconfig/         key material (generation, fingerprints, vault) and web.config editing
  nodes/                    the node-operations contract and its transports
  orchestration/            rotate, sync, rollback, restore, recover, audit
  api, cli/, lab/           the library's front door, command line, the local lab farm

``from farmsync import Farm`` works: the names of :mod:`farmsync.api` are loaded on first use,
so importing the package (or any lower layer) never pulls in orchestration.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # for type checkers; at run time __getattr__ loads them on first use
    from farmsync.api import (
        AuditOptions,
        AuditReport,
        ConfigFileError,
        ExitCode,
        Farm,
        FarmsyncError,
        FileResult,
        Finding,
        HostResult,
        InputError,
        LockHeldError,
        MachineKeyError,
        NodeError,
        NodeErrorKind,
        Outcome,
        RolloutOptions,
        RunResult,
        Severity,
        VaultError,
        VaultSecret,
    )

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
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from farmsync import api

        return getattr(api, name)
    raise AttributeError(f"module 'farmsync' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
