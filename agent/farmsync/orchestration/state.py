"""Where farmsync keeps its per-farm state: the key vault, the run journal and the lock.

Layout: ``<root>/<farm>/{vault.fsv, journal.jsonl, lock}``. The root comes from
``FARMSYNC_STATE_DIR``, else ``$XDG_STATE_HOME/farmsync``, else ``~/.local/state/farmsync``.
Directories are created 0700 because the vault (and the journal's host list) are nobody
else's business.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from farmsync.errors import InputError, state_writes

STATE_DIR_ENV = "FARMSYNC_STATE_DIR"
VAULT_FILE = "vault.fsv"
JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = "lock"

# A farm name becomes a directory name: keep it to one safe path component.
_FARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_state_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "farmsync"
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / "farmsync"


def _make_private_dir(path: Path, *, tighten: bool) -> None:
    """Create ``path`` (and parents) 0700. With ``tighten``, also fix an existing directory we
    own; the root may be a shared directory the user pointed us at, so it is never chmodded."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not tighten:
        return
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        path.chmod(0o700)


class StateDir:
    """Paths of one farm's state files. Nothing is created until :meth:`ensure` is called."""

    def __init__(self, root: Path, farm: str):
        if not _FARM_NAME.match(farm) or farm in {".", ".."}:
            raise InputError(
                f"farm name {farm!r} cannot name a state directory "
                "(letters, digits, '.', '_' and '-' only, starting with a letter or digit)"
            )
        self.root = Path(root)
        self.farm = farm

    @classmethod
    def default(cls, farm: str, environ: Mapping[str, str] | None = None) -> StateDir:
        return cls(default_state_root(environ), farm)

    @property
    def farm_dir(self) -> Path:
        return self.root / self.farm

    @property
    def vault(self) -> Path:
        return self.farm_dir / VAULT_FILE

    @property
    def journal(self) -> Path:
        return self.farm_dir / JOURNAL_FILE

    @property
    def lock(self) -> Path:
        return self.farm_dir / LOCK_FILE

    def ensure(self) -> StateDir:
        """Create the root and the farm directory (0700) if missing; returns self."""
        with state_writes(self.root, "create the farm's state directory"):
            _make_private_dir(self.root, tighten=False)
            _make_private_dir(self.farm_dir, tighten=True)
        return self

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r}, {self.farm!r})"
