"""How a farm command runs: the options and their defaults, the command line's too.

Its own module, light to import, so that ``farmsync --help`` shows the defaults without
loading the rollout engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from farmsync.nodes.contract import DEFAULT_BACKUP_RETENTION, DEFAULT_COMMIT_TIMEOUT

DEFAULT_FORKS = 50  # nodes worked on at once


@dataclass(frozen=True)
class RolloutOptions:
    """How a farm command runs; these defaults are the command line's defaults too."""

    forks: int = DEFAULT_FORKS
    check: bool = False
    diff: bool = False
    timeout: float = DEFAULT_COMMIT_TIMEOUT
    keep_backups: int = DEFAULT_BACKUP_RETENTION
    recycle: bool = True
    clear_staged: tuple[str, ...] = ()  # other runs' staging files to remove (--clear-staged)
