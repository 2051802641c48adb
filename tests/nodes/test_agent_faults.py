"""Faults on real files: permission denied, disk full, failures half-way through a commit,
readers racing a commit. Nothing half-written may ever take the place of a live file.

How the faults are made real here (tests often run as root, where file modes do not bite):
  * writes denied in-process: ``chattr +i`` on the directory (EPERM for every new entry or
    rename) when root; a read-only bind mount (EROFS) if chattr is unsupported; plain
    ``chmod 0555`` when not root;
  * reads and writes denied to the agent process: it drops to uid 65534 (``nobody``) after
    start-up when run as root, exactly as an under-privileged service account would see it;
  * disk full: the agent process runs under RLIMIT_FSIZE, so writes fail with EFBIG.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from farmsync.errors import NodeErrorKind
from farmsync.inventory.model import Host, Shell, Transport
from farmsync.nodes import agent, psagent
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    staging_path,
)
from farmsync.nodes.local import LocalNode
from tests.nodes.contract_cases import (
    NEW,
    OLD,
    SECRET_HEX,
    commit,
    expect_node_error,
    leftovers,
    live,
    sha,
    stage,
)

pytestmark = pytest.mark.slow  # a fault suite: `make fast` leaves it out

ROOT = os.geteuid() == 0
NOBODY = 65534


def local_node() -> LocalNode:
    host = Host("web-local", "farm", Transport.LOCAL, "localhost", 0, Shell.POSIX)
    return LocalNode(host)


@contextmanager
def writes_denied(directory: Path) -> Iterator[str]:
    """Make ``directory`` refuse new entries and renames for this process, for real."""
    if not ROOT:
        directory.chmod(0o555)
        try:
            yield "chmod 0555"
        finally:
            directory.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0:
        try:
            yield "chattr +i"
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        return
    bound = subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True)
    if bound.returncode == 0:
        try:
            ro = ["mount", "-o", "remount,bind,ro", str(directory)]
            subprocess.run(ro, check=True, capture_output=True)
            yield "read-only bind mount"
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    pytest.fail("running as root but can deny writes neither by chattr +i nor by a ro mount")


# --- in-process: the local transport ----------------------------------------------------------


def test_stage_into_a_write_protected_directory_is_permission_denied(tmp_path: Path) -> None:
    path = live(tmp_path)
    with writes_denied(tmp_path):
        err = expect_node_error(
            NodeErrorKind.PERMISSION, lambda: stage(local_node(), path, NEW, "r1")
        )
    assert err.path is not None and err.path.startswith(path)
    assert leftovers(tmp_path) == []
    assert Path(path).read_bytes() == OLD


def test_commit_into_a_write_protected_directory_changes_nothing(tmp_path: Path) -> None:
    path = live(tmp_path)
    node = local_node()
    stage(node, path, NEW, "r1")
    with writes_denied(tmp_path):
        expect_node_error(NodeErrorKind.PERMISSION, lambda: commit(node, path, NEW, "r1"))
        assert Path(path).read_bytes() == OLD
    assert leftovers(tmp_path) == [Path(staging_path(path, "r1")).name]


def test_a_commit_failing_half_way_puts_back_what_it_replaced(tmp_path: Path) -> None:
    first = live(tmp_path / "site1")
    second = live(tmp_path / "site2")
    node = local_node()
    node.stage([StageItem(first, NEW, sha(OLD)), StageItem(second, NEW, sha(OLD))], "r1")
    items = [CommitItem(first, sha(OLD), sha(NEW)), CommitItem(second, sha(OLD), sha(NEW))]
    with writes_denied(tmp_path / "site2"):
        err = expect_node_error(NodeErrorKind.PERMISSION, lambda: node.commit(items, "r1"))
    assert err.path == second
    assert Path(first).read_bytes() == OLD, "the first file, already replaced, was put back"
    assert Path(second).read_bytes() == OLD
    assert Path(backup_path(first, "r1")).read_bytes() == OLD


def test_rollback_into_a_write_protected_directory_leaves_the_live_file(tmp_path: Path) -> None:
    path = live(tmp_path)
    node = local_node()
    stage(node, path, NEW, "r1")
    commit(node, path, NEW, "r1")
    with writes_denied(tmp_path):
        expect_node_error(NodeErrorKind.PERMISSION, lambda: node.rollback([path], "r1"))
    assert Path(path).read_bytes() == NEW
    assert ".farmsync-r1.tmp" not in " ".join(leftovers(tmp_path))


def test_staging_and_backup_keep_owner_and_mode(tmp_path: Path) -> None:
    path = live(tmp_path, mode=0o604)
    owner = (4321, 4322) if ROOT else (os.getuid(), os.getgid())
    os.chown(path, *owner)
    node = local_node()
    stage(node, path, NEW, "r1")
    staged = os.stat(staging_path(path, "r1"))
    assert (staged.st_uid, staged.st_gid, staged.st_mode & 0o7777) == (*owner, 0o604)
    commit(node, path, NEW, "r1")
    for copy in (path, backup_path(path, "r1")):
        st = os.stat(copy)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (*owner, 0o604)


def test_a_symlinked_live_file_is_refused_at_stage_and_commit(tmp_path: Path) -> None:
    # As stage.ps1/commit.ps1 refuse reparse points and SFTP staging refuses links: the
    # replace would act on the link, not on the file it names.
    real = live(tmp_path / "real")
    link = tmp_path / "web.config"
    node = local_node()
    stage(node, str(tmp_path / "real" / "web.config"), NEW, "r1")
    Path(staging_path(str(link), "r1")).write_bytes(NEW)
    link.symlink_to(real)
    err = expect_node_error(NodeErrorKind.PROTOCOL, lambda: stage(node, str(link), NEW, "r2"))
    assert "symbolic link" in err.detail and err.path == str(link)
    items = [CommitItem(str(link), sha(OLD), sha(NEW))]
    expect_node_error(NodeErrorKind.PROTOCOL, lambda: node.arm_commit(items, "r1"))
    assert link.is_symlink() and Path(real).read_bytes() == OLD
    assert not Path(staging_path(str(link), "r2")).exists()


def test_restaging_in_the_same_run_replaces_the_old_staging_file(tmp_path: Path) -> None:
    path = live(tmp_path)
    node = local_node()
    stage(node, path, b"first attempt", "r1")
    stage(node, path, NEW, "r1")
    assert Path(staging_path(path, "r1")).read_bytes() == NEW


def test_readers_see_the_old_or_the_new_file_never_anything_else(tmp_path: Path) -> None:
    a = OLD + b"A" * 200_000
    b = NEW + b"B" * 300_000
    path = live(tmp_path, content=a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(Path(path).read_bytes())  # FileNotFoundError would end the test

    thread = threading.Thread(target=reader)
    thread.start()
    node = local_node()
    try:
        current, other = a, b
        for i in range(60):
            stage(node, path, other, f"r{i}", old=current)
            commit(node, path, other, f"r{i}", old=current)
            current, other = other, current
    finally:
        stop.set()
        thread.join()
    assert seen <= {a, b}
    assert Path(path).read_bytes() == a


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, NodeErrorKind.DISK_FULL),
        (errno.EDQUOT, NodeErrorKind.DISK_FULL),
        (errno.EFBIG, NodeErrorKind.DISK_FULL),
        (errno.EACCES, NodeErrorKind.PERMISSION),
        (errno.EPERM, NodeErrorKind.PERMISSION),
        (errno.EROFS, NodeErrorKind.PERMISSION),
        (errno.EISDIR, NodeErrorKind.IS_DIRECTORY),
        (errno.ENOENT, NodeErrorKind.NOT_FOUND),
        (errno.ENOTDIR, NodeErrorKind.NOT_FOUND),
        (errno.EIO, NodeErrorKind.REMOTE),
    ],
)
def test_os_errors_map_to_node_error_kinds(code: int, kind: NodeErrorKind) -> None:
    assert agent.error_kind(OSError(code, os.strerror(code))) is kind


# --- the agent process under real restrictions -------------------------------------------------

RESTRICTED_AGENT = """
import os, resource, sys
import farmsync.nodes.agent as agent
uid, fsize = int(sys.argv[1]), int(sys.argv[2])
if fsize:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
if uid != os.getuid():
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
sys.exit(agent.main())
"""


def run_restricted(op: str, args: dict[str, object], uid: int, fsize: int = 0) -> dict[str, object]:
    argv = [sys.executable, "-c", RESTRICTED_AGENT, str(uid), str(fsize)]
    done = subprocess.run(
        argv, input=psagent.request_line(op, args), capture_output=True, timeout=60
    )
    assert SECRET_HEX.encode() not in done.stdout + done.stderr
    try:
        return {"result": psagent.parse_output(done.stdout, host="node", phase=op)}
    except Exception as err:  # the NodeError, as a transport would raise it
        return {"error": err}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged agent can traverse (tmp_path's parents are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="farmsync-agent-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def unprivileged() -> int:
    return NOBODY if ROOT else os.getuid()


def test_unprivileged_agent_gets_permission_denied(shared_dir: Path) -> None:
    secret = live(shared_dir, "secret.config", NEW, mode=0o600)
    public = live(shared_dir, "web.config", OLD, mode=0o644)
    if not ROOT:
        Path(secret).chmod(0o000)
        shared_dir.chmod(0o555)
    try:
        read = run_restricted("read", {"paths": [secret, public]}, unprivileged())["result"]
        files = psagent.files_from_result(read)  # type: ignore[arg-type]
        assert files[secret].status is FileStatus.ERROR
        assert files[secret].error_kind is NodeErrorKind.PERMISSION
        assert files[public].content == OLD
        args = psagent.stage_args([StageItem(public, NEW, sha(OLD))], "r1")
        err = run_restricted("stage", args, unprivileged())["error"]
        assert getattr(err, "kind", None) is NodeErrorKind.PERMISSION
        assert leftovers(shared_dir) == []
    finally:
        shared_dir.chmod(0o755)
        Path(secret).chmod(0o600)


def test_disk_full_while_staging_leaves_nothing_behind(tmp_path: Path) -> None:
    path = live(tmp_path)
    big = NEW + b"<!-- padding -->" * 20_000
    args = psagent.stage_args([StageItem(path, big, sha(OLD))], "r1")
    err = run_restricted("stage", args, os.getuid(), fsize=64 * 1024)["error"]
    assert getattr(err, "kind", None) is NodeErrorKind.DISK_FULL
    assert leftovers(tmp_path) == [], "the partial staging file was removed"
    assert Path(path).read_bytes() == OLD


def test_disk_full_while_rolling_back_keeps_the_live_file(tmp_path: Path) -> None:
    big = OLD + b"<!-- padding -->" * 20_000
    path = live(tmp_path, content=big)
    node = local_node()
    stage(node, path, NEW, "r1", old=big)
    commit(node, path, NEW, "r1", old=big)
    args = {"run_id": "r1", "paths": [path], "expected": {}}
    err = run_restricted("rollback", args, os.getuid(), 64 * 1024)
    assert getattr(err["error"], "kind", None) is NodeErrorKind.DISK_FULL
    assert Path(path).read_bytes() == NEW
    assert leftovers(tmp_path) == [Path(backup_path(path, "r1")).name]
