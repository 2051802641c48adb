"""FarmLock against real processes: contention names the holder, SIGKILL never leaves it stale."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmsync.errors import ExitCode, LockHeldError
from farmsync.orchestration.lock import FarmLock
from farmsync.orchestration.state import StateDir

HOLDER = textwrap.dedent(
    """
    import sys, time
    from farmsync.orchestration.lock import FarmLock
    lock = FarmLock(sys.argv[1], "web", command="farmsync rotate")
    lock.acquire()
    lock.set_run_id("run-holder-1")
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
    lock.release()
    print("released", flush=True)
    """
)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return StateDir(tmp_path, "web").ensure().lock


@pytest.fixture
def holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "locked\n", f"lock holder did not start: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_second_process_is_refused_and_told_who_holds_the_lock(
    lock_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockHeldError) as caught:
        FarmLock(lock_path, "web", command="farmsync sync").acquire()
    err = caught.value
    assert err.farm == "web"
    assert err.exit_code == ExitCode.CANNOT_START
    assert f"pid {holder.pid} " in err.holder
    assert "farmsync rotate" in err.holder
    assert "run run-holder-1" in err.holder
    assert "since " in err.holder
    assert err.holder in str(err) and "'web'" in str(err)


def test_lock_is_free_once_the_holder_is_sigkilled(
    lock_path: Path, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with FarmLock(lock_path, "web", command="farmsync recover") as lock:
        assert lock.held
        # The dead holder's description was replaced by ours.
        content = lock_path.read_text()
        assert f'"pid": {os.getpid()}' in content
        assert "farmsync recover" in content


def test_lock_is_free_after_a_clean_release(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    assert holder.stdout.readline() == "released\n"
    with FarmLock(lock_path, "web"):
        pass
    assert holder.wait(timeout=30) == 0


def test_same_process_cannot_take_the_lock_twice(lock_path: Path) -> None:
    with FarmLock(lock_path, "web", command="farmsync rotate"):
        with pytest.raises(LockHeldError) as caught:
            FarmLock(lock_path, "web").acquire()
        assert f"pid {os.getpid()} " in caught.value.holder
    # Released on exit, even though the description file stays.
    with FarmLock(lock_path, "web"):
        pass
    assert lock_path.exists() and lock_path.read_text() == ""


def test_lock_file_is_private_and_lock_released_on_exception(lock_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), FarmLock(lock_path, "web"):
        raise RuntimeError("boom")
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600
    with FarmLock(lock_path, "web"):
        pass


def test_unreadable_holder_details_still_give_a_clear_error(lock_path: Path) -> None:
    with FarmLock(lock_path, "web"):
        lock_path.write_text("")  # a holder caught before it wrote its details
        with pytest.raises(LockHeldError, match="another farmsync process"):
            FarmLock(lock_path, "web").acquire()
