"""One run at a time per farm: an exclusive ``flock`` on the farm's lock file.

``flock`` belongs to the open file, so the kernel drops it when the holder dies, however it
dies (SIGKILL included): a lock can never go stale. The file itself stays (removing it would
let two processes lock two different inodes); it only carries a description of the current
holder so a refused run can say who is in the way.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from farmsync.errors import LockHeldError, state_writes

_HOLDER_MAX_BYTES = 4096
_HOLDER_READ_ATTEMPTS = 5


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        return str(os.getuid())


def describe_holder(info: dict[str, object]) -> str:
    """'pid 123 of alice on web1 (farmsync rotate, run R, since T)' from the lock file's JSON."""
    pid = info.get("pid", "?")
    host = info.get("hostname", "?")
    user = info.get("user")
    inside = [str(info.get("command") or "farmsync")]
    if info.get("run_id"):
        inside.append(f"run {info['run_id']}")
    if info.get("started_at"):
        inside.append(f"since {info['started_at']}")
    who = f"pid {pid}" + (f" of {user}" if user else "")
    return f"{who} on {host} ({', '.join(inside)})"


class FarmLock:
    """Exclusive, non-blocking lock of one farm, used as a context manager.

    ``with FarmLock(state.lock, farm, command="farmsync rotate") as lock: ...`` raises
    :class:`LockHeldError` at once when another process holds it. The run id is often known
    only once the lock is held: :meth:`set_run_id` records it for the next one refused.
    """

    def __init__(
        self,
        path: Path | str,
        farm: str,
        *,
        command: str = "farmsync",
        run_id: str | None = None,
    ):
        self.path = Path(path)
        self.farm = farm
        self.command = command
        self.run_id = run_id
        self._fd: int | None = None
        self._info: dict[str, object] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FarmLock:
        with state_writes(self.path.parent, "take the farm lock"):
            return self._acquire()

    def _acquire(self) -> FarmLock:
        if self._fd is not None:
            raise RuntimeError(f"lock of farm {self.farm!r} already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise LockHeldError(self.farm, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._info = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "user": _user(),
            "command": self.command,
            "run_id": self.run_id,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "farm": self.farm,
        }
        try:
            self._write_holder()
        except BaseException:
            self.release()  # a lock we cannot describe is not kept
            raise
        return self

    def set_run_id(self, run_id: str) -> None:
        self.run_id = run_id
        if self._fd is not None:
            self._info["run_id"] = run_id
            with state_writes(self.path.parent, "update the farm lock"):
                self._write_holder()

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no holder any more; a later reader must not name us
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FarmLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # The description is rewritten in place (one pwrite of a padded buffer would be no more
    # atomic than this): readers that catch it half-written fall back to a generic holder.
    def _write_holder(self) -> None:
        assert self._fd is not None
        data = (json.dumps(self._info, sort_keys=True) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _read_holder(self, fd: int) -> str:
        # The holder writes its description just after locking; give it a moment.
        for attempt in range(_HOLDER_READ_ATTEMPTS):
            try:
                info = json.loads(os.pread(fd, _HOLDER_MAX_BYTES, 0).decode())
            except (OSError, ValueError):
                info = None
            if isinstance(info, dict):
                return describe_holder(info)
            if attempt + 1 < _HOLDER_READ_ATTEMPTS:
                time.sleep(0.05)
        return f"another farmsync process (no holder details in {self.path})"
