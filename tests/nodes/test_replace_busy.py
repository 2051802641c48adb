"""A live file another process holds during the replace: bounded retry, reported.

On Windows, antivirus, a backup agent or IIS reading its configuration hold the file with a
sharing or lock violation (Win32 32, 33, 1175, 1176) for a moment. Linux has no sharing
modes, so the twin is tested with the POSIX kin of that failure, made real: the live file is
a bind mount point, and renaming over a mount point fails with EBUSY for as long as the
mount holds. The retry loop's ``sleep`` is the seam where the test releases the mount, so
the test decides when the holder lets go, without timing anything.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from farmsync.errors import NodeErrorKind
from farmsync.nodes import agent, protocol
from farmsync.nodes.contract import CommitItem, StageItem, backup_path, staging_path
from tests.nodes.contract_cases import NEW, OLD, live, sha


@contextmanager
def held(path: str) -> Iterator[list[bool]]:
    """``path`` bind-mounted onto itself: busy for rename(2) until unmounted."""
    done = subprocess.run(["mount", "--bind", path, path], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"bind mount needs root and mount(8): {done.stderr.decode().strip()}")
    state = [True]
    try:
        yield state
    finally:
        if state[0]:
            subprocess.run(["umount", path], check=True)


def release(path: str, state: list[bool]) -> None:
    subprocess.run(["umount", path], check=True)
    state[0] = False


def staged(path: str, run_id: str) -> list[CommitItem]:
    agent.stage_files([StageItem(path, NEW, sha(OLD))], run_id)
    return [CommitItem(path, sha(OLD), sha(NEW))]


def test_is_busy_knows_the_windows_codes_and_the_posix_kin() -> None:
    for code in protocol.BUSY_WIN32_ERRORS:
        exc = OSError(errno.EACCES, "in use")
        exc.winerror = code  # type: ignore[attr-defined]  # what Windows' OSError carries
        assert agent.is_busy(exc)
    assert agent.is_busy(OSError(errno.EBUSY, "busy"))
    assert not agent.is_busy(OSError(errno.EACCES, "denied"))


def test_a_busy_live_file_is_retried_until_free_and_the_retry_reported(tmp_path: Path) -> None:
    path = live(tmp_path)
    items = staged(path, "r1")
    delays: list[float] = []
    warnings: list[str] = []
    with held(path) as state:

        def sleep(seconds: float) -> None:  # the holder lets go after the second busy attempt
            delays.append(seconds)
            if len(delays) == 2:
                release(path, state)

        assert agent.commit_files(items, "r1", sleep=sleep, warnings=warnings) == [path]
    assert delays == [protocol.REPLACE_FIRST_DELAY, protocol.REPLACE_FIRST_DELAY * 2]
    assert warnings == [f"{path}: replaced after 2 retries (file in use)"]
    assert Path(path).read_bytes() == NEW
    assert Path(backup_path(path, "r1")).read_bytes() == OLD


def test_a_file_busy_past_the_bound_fails_the_commit_and_changes_nothing(tmp_path: Path) -> None:
    path = live(tmp_path)
    other = live(tmp_path / "first")  # replaced before the busy one: must be restored
    agent.stage_files([StageItem(other, NEW, sha(OLD))], "r1")
    items = [CommitItem(other, sha(OLD), sha(NEW)), *staged(path, "r1")]
    delays: list[float] = []
    with held(path), pytest.raises(agent.AgentError) as info:
        agent.commit_files(items, "r1", sleep=delays.append)
    assert len(delays) == protocol.REPLACE_ATTEMPTS - 1
    assert info.value.kind is NodeErrorKind.REMOTE and info.value.path == path
    assert "still in use" in info.value.detail
    assert Path(path).read_bytes() == OLD and Path(other).read_bytes() == OLD
    assert Path(staging_path(path, "r1")).read_bytes() == NEW  # kept for a later attempt


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    path = live(tmp_path)
    items = staged(path, "r1")
    Path(staging_path(path, "r1")).unlink()
    delays: list[float] = []
    with pytest.raises(agent.AgentError) as info:
        agent.commit_files(items, "r1", sleep=delays.append)
    assert info.value.kind is NodeErrorKind.NOT_FOUND and delays == []
