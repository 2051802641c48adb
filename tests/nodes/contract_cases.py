"""Contract scenarios every transport must pass, against real files on the node.

Each case is a function ``case(node, root)``: ``node`` a connected :class:`NodeOperations`,
``root`` an empty directory of the node's filesystem that the test can also reach directly
(every test node here runs on this machine). Transport tests parametrize over them::

    from tests.nodes.contract_cases import CONTRACT_CASES, case_id

    @pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
    def test_contract(case, my_node_and_root):
        node, root = my_node_and_root
        case(node, root)

``ProcessAgentNode`` is a minimal reference driver of the stdin protocol (PROTOCOL.md): it
runs one agent process per call (the Python agent, or pwsh with the PowerShell scripts).
"""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleSpec
from farmsync.nodes import psagent
from farmsync.nodes.contract import (
    DEFAULT_BACKUP_RETENTION,
    ArmedCommit,
    CommitItem,
    FileState,
    FileStatus,
    NodeOperations,
    StageItem,
    backup_path,
    staging_path,
)

ContractCase = Callable[[NodeOperations, Path], None]

OLD = b'<?xml version="1.0"?>\r\n<configuration><machineKey validationKey="AAAA" /></configuration>'
# A recognisable stand-in for key material: must never show up in an error.
SECRET_HEX = "5EC2E7" * 20
NEW = OLD.replace(b"AAAA", SECRET_HEX.encode())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def live(root: Path, name: str = "web.config", content: bytes = OLD, mode: int = 0o640) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def stage(node: NodeOperations, path: str, new: bytes, run_id: str, old: bytes = OLD) -> None:
    node.stage([StageItem(path, new, sha(old))], run_id)


def commit(node: NodeOperations, path: str, new: bytes, run_id: str, old: bytes = OLD) -> None:
    node.commit([CommitItem(path, sha(old), sha(new))], run_id)


def expect_node_error(kind: NodeErrorKind, call: Callable[[], object]) -> NodeError:
    with pytest.raises(NodeError) as info:
        call()
    assert info.value.kind is kind, f"expected {kind.value}, got {info.value}"
    assert SECRET_HEX not in str(info.value)
    return info.value


def expect_commit_refused(
    node: NodeOperations, items: Sequence[CommitItem], run_id: str, kind: NodeErrorKind
) -> NodeError:
    """A refused commit may fail at arm time or, at the latest, when waited for."""
    try:
        armed = node.arm_commit(items, run_id)
    except NodeError as err:
        assert err.kind is kind, str(err)
        return err

    def release_and_wait() -> None:
        armed.release()
        armed.wait(30)

    return expect_node_error(kind, release_and_wait)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".farmsync-" in p.name)


# --- the cases ------------------------------------------------------------------------------


def read_reports_content_hash_mtime_and_missing(node: NodeOperations, root: Path) -> None:
    a = live(root, "a.config", OLD)
    b = live(root, "b.config", NEW)
    missing = str(root / "absent.config")
    before = node.round_trips
    states = node.read([a, b, missing])
    assert node.round_trips == before + 1, "one round trip for all paths"
    assert states[a] == FileState(
        a, FileStatus.OK, OLD, sha(OLD), states[a].mtime, file_id=states[a].file_id
    )
    assert states[b].content == NEW and states[b].sha256 == sha(NEW)
    assert states[a].file_id and states[b].file_id and states[a].file_id != states[b].file_id
    assert states[a].mtime is not None
    # The contract promises whole-second precision: SFTP v3 carries no more.
    assert abs(states[a].mtime - os.stat(a).st_mtime) < 1.0
    assert states[missing].status is FileStatus.MISSING and states[missing].content is None
    assert SECRET_HEX not in repr(states[b])


def read_of_directory_is_an_error_state(node: NodeOperations, root: Path) -> None:
    (root / "site").mkdir()
    state = node.read([str(root / "site")])[str(root / "site")]
    assert state.status is FileStatus.ERROR
    assert state.error_kind is NodeErrorKind.IS_DIRECTORY


def full_cycle_keeps_byte_identical_backup(node: NodeOperations, root: Path) -> None:
    path = live(root, mode=0o640)
    stage(node, path, NEW, "run1")
    staged = Path(staging_path(path, "run1"))
    assert staged.read_bytes() == NEW
    assert stat.S_IMODE(staged.stat().st_mode) == 0o640, "staging file gets the live file's mode"
    assert Path(path).read_bytes() == OLD, "stage leaves the live file alone"
    commit(node, path, NEW, "run1")
    assert Path(path).read_bytes() == NEW
    backup = Path(backup_path(path, "run1"))
    assert backup.read_bytes() == OLD
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert not staged.exists()
    assert node.read([path])[path].sha256 == sha(NEW), "verify = read"
    assert node.list_backups([path]) == {path: ["run1"]}
    node.cleanup([path], "run1")
    assert leftovers(root) == [backup.name], "cleanup keeps the backup within retention"


def commit_replaces_several_files_in_one_call(node: NodeOperations, root: Path) -> None:
    paths = [live(root / "app1", content=OLD), live(root / "app2", content=OLD + b"\n")]
    olds = [OLD, OLD + b"\n"]
    news = [NEW, NEW + b"\n"]
    before = node.round_trips
    node.stage(
        [StageItem(p, n, sha(o)) for p, n, o in zip(paths, news, olds, strict=True)], "multi"
    )
    assert node.round_trips == before + 1, "one round trip for all items"
    node.commit(
        [CommitItem(p, sha(o), sha(n)) for p, n, o in zip(paths, news, olds, strict=True)], "multi"
    )
    assert [Path(p).read_bytes() for p in paths] == news
    assert [Path(backup_path(p, "multi")).read_bytes() for p in paths] == olds


def stage_refuses_a_changed_file_and_writes_nothing(node: NodeOperations, root: Path) -> None:
    a = live(root, "a.config")
    b = live(root, "b.config")
    Path(b).write_bytes(OLD + b"<!-- edited by someone -->")
    items = [StageItem(a, NEW, sha(OLD)), StageItem(b, NEW, sha(OLD))]
    err = expect_node_error(NodeErrorKind.CHANGED, lambda: node.stage(items, "run1"))
    assert err.path == b
    assert leftovers(root) == [], "all or nothing: no staging file for the unchanged one either"
    assert Path(a).read_bytes() == OLD


def stage_of_a_missing_file_is_not_found(node: NodeOperations, root: Path) -> None:
    path = str(root / "gone.config")
    expect_node_error(NodeErrorKind.NOT_FOUND, lambda: stage(node, path, NEW, "run1"))
    assert leftovers(root) == []


def stage_of_a_directory_is_is_directory(node: NodeOperations, root: Path) -> None:
    (root / "web.config").mkdir()
    path = str(root / "web.config")
    expect_node_error(NodeErrorKind.IS_DIRECTORY, lambda: stage(node, path, NEW, "run1"))
    assert leftovers(root) == []


def arm_then_abort_touches_nothing(node: NodeOperations, root: Path) -> None:
    path = live(root)
    stage(node, path, NEW, "run1")
    armed: ArmedCommit = node.arm_commit([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    armed.abort()
    assert Path(path).read_bytes() == OLD
    assert not Path(backup_path(path, "run1")).exists()
    assert Path(staging_path(path, "run1")).read_bytes() == NEW, "staged file kept for a retry"
    commit(node, path, NEW, "run1")  # a later commit of the same run still works
    assert Path(path).read_bytes() == NEW


def commit_refuses_when_live_changed_after_stage(node: NodeOperations, root: Path) -> None:
    path = live(root)
    stage(node, path, NEW, "run1")
    edited = OLD + b"<!-- hotfix -->"
    Path(path).write_bytes(edited)
    items = [CommitItem(path, sha(OLD), sha(NEW))]
    expect_commit_refused(node, items, "run1", NodeErrorKind.CHANGED)
    assert Path(path).read_bytes() == edited
    assert not Path(backup_path(path, "run1")).exists()


def commit_without_staging_is_refused(node: NodeOperations, root: Path) -> None:
    path = live(root)
    items = [CommitItem(path, sha(OLD), sha(NEW))]
    expect_commit_refused(node, items, "run1", NodeErrorKind.NOT_FOUND)
    assert Path(path).read_bytes() == OLD


def rollback_restores_byte_identical_and_keeps_backup(node: NodeOperations, root: Path) -> None:
    path = live(root, mode=0o600)
    never = live(root, "never.config")
    stage(node, path, NEW, "run1")
    commit(node, path, NEW, "run1")
    stage(node, never, NEW, "run1")  # staged, never committed
    node.rollback([path, never], "run1")
    assert Path(path).read_bytes() == OLD
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Path(backup_path(path, "run1")).read_bytes() == OLD, "the backup stays"
    assert Path(never).read_bytes() == OLD
    assert not Path(staging_path(never, "run1")).exists(), "skipped path loses its staging file"
    node.rollback([path], "run1")  # idempotent
    assert Path(path).read_bytes() == OLD


def cleanup_prunes_backups_beyond_retention(node: NodeOperations, root: Path) -> None:
    path = live(root)
    content = OLD
    runs = [f"r{i}" for i in range(4)]
    for i, run_id in enumerate(runs):
        new = NEW + b"<!-- %d -->" % i
        stage(node, path, new, run_id, old=content)
        commit(node, path, new, run_id, old=content)
        # Backups age by mtime; give them distinct, increasing ones (no reliance on clocks).
        os.utime(backup_path(path, run_id), (1_700_000_000 + i * 60,) * 2)
        content = new
    assert node.list_backups([path]) == {path: list(reversed(runs))}
    node.cleanup([path], runs[-1], keep_backups=2)
    assert node.list_backups([path]) == {path: ["r3", "r2"]}
    assert not Path(backup_path(path, "r0")).exists()
    assert Path(path).read_bytes() == content
    assert DEFAULT_BACKUP_RETENTION == 10


def binary_content_and_unicode_names_round_trip(node: NodeOperations, root: Path) -> None:
    old = b"\xef\xbb\xbf<configuration>\r\n\x00\xff</configuration>"
    new = bytes(range(256)) * 300  # larger than one pipe buffer, every byte value
    path = live(root / "Sité Ünicode", "wéb.config", old)
    stage(node, path, new, "run-1.a_b", old=old)
    commit(node, path, new, "run-1.a_b", old=old)
    state = node.read([path])[path]
    assert state.content == new and state.sha256 == sha(new)
    assert node.list_backups([path]) == {path: ["run-1.a_b"]}


def errors_never_carry_file_contents(node: NodeOperations, root: Path) -> None:
    path = live(root, content=NEW)
    err = expect_node_error(NodeErrorKind.CHANGED, lambda: stage(node, path, NEW, "run1"))
    for text in (str(err), err.detail, repr(err.args)):
        assert SECRET_HEX not in text
        assert "validationKey" not in text


def invalid_run_id_is_refused(node: NodeOperations, root: Path) -> None:
    path = live(root)
    expect_node_error(NodeErrorKind.PROTOCOL, lambda: stage(node, path, NEW, "../escape"))
    assert leftovers(root) == [] and not (root.parent / "escape").exists()


def read_gives_one_file_one_id_whatever_the_path(node: NodeOperations, root: Path) -> None:
    """A directory symlinked to another managed directory: two paths, one file, one id."""
    real = live(root / "v4", "web.config")
    (root / "v4-64").symlink_to(root / "v4", target_is_directory=True)
    alias = str(root / "v4-64" / "web.config")
    other = live(root / "v2", "web.config")
    states = node.read([real, alias, other])
    assert states[real].file_id is not None
    assert states[alias].file_id == states[real].file_id
    assert states[other].file_id != states[real].file_id


def read_refuses_devices_and_oversized_files_without_reading_them(
    node: NodeOperations, root: Path
) -> None:
    sparse = root / "huge.config"
    with open(sparse, "wb") as f:
        f.truncate(2 * 1024**3)  # 2 GiB, sparse: costs no disk, would cost memory if read
    (root / "zero.config").symlink_to("/dev/zero")
    os.mkfifo(root / "fifo.config")
    paths = [str(sparse), str(root / "zero.config"), str(root / "fifo.config")]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    states = node.read(paths)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert states[str(sparse)].status is FileStatus.ERROR
    assert states[str(sparse)].error_kind is NodeErrorKind.TOO_LARGE
    for path in paths[1:]:
        assert states[path].status is FileStatus.ERROR
        assert states[path].error_kind is NodeErrorKind.NOT_REGULAR, path
    assert grown_kib < 64 * 1024, "the controller read the file instead of refusing it"


def commit_never_replaces_an_existing_backup(node: NodeOperations, root: Path) -> None:
    path = live(root)
    stage(node, path, NEW, "run1")
    first = Path(backup_path(path, "run1"))
    first.write_bytes(b"the original, kept by the first of two aliases")
    items = [CommitItem(path, sha(OLD), sha(NEW))]
    expect_commit_refused(node, items, "run1", NodeErrorKind.BACKUP_EXISTS)
    assert first.read_bytes() == b"the original, kept by the first of two aliases"
    assert Path(path).read_bytes() == OLD


def rollback_fences_a_released_commit_that_has_not_landed(node: NodeOperations, root: Path) -> None:
    """The rollback removes the staging file first, so a commit released later (a late
    COMMIT still in flight when the controller gave up) finds nothing to put in place."""
    path = live(root)
    stage(node, path, NEW, "run1")
    armed = node.arm_commit([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    node.rollback([path], "run1", {path: sha(OLD)})
    assert not Path(staging_path(path, "run1")).exists()

    def late_commit() -> None:
        armed.release()
        armed.wait(30)

    expect_node_error(NodeErrorKind.NOT_FOUND, late_commit)
    assert Path(path).read_bytes() == OLD
    assert node.read([path])[path].sha256 == sha(OLD)


def rollback_acts_on_what_the_live_file_holds(node: NodeOperations, root: Path) -> None:
    path = live(root)
    stage(node, path, NEW, "run1")
    commit(node, path, NEW, "run1")
    backup = Path(backup_path(path, "run1"))
    backup.write_bytes(b"not the original")  # a backup the run did not make
    err = expect_node_error(
        NodeErrorKind.VERIFY, lambda: node.rollback([path], "run1", {path: sha(OLD)})
    )
    assert err.path == path
    assert Path(path).read_bytes() == NEW, "left as it is"
    assert backup.read_bytes() == b"not the original"
    Path(path).write_bytes(OLD)  # the live file already holds the original: nothing to do
    node.rollback([path], "run1", {path: sha(OLD)})
    assert Path(path).read_bytes() == OLD


def backups_are_ordered_by_run_id_not_by_file_time(node: NodeOperations, root: Path) -> None:
    path = live(root)
    future = 1_900_000_000  # 2030: a node whose clock once ran ahead
    for i in range(4):  # old runs whose backups claim to be from the future
        old = Path(backup_path(path, f"20250101T00000{i}Z-aaaaaa"))
        old.write_bytes(OLD)
        os.utime(old, (future + i, future + i))
    current = "20261127T120000Z-bbbbbb"
    stage(node, path, NEW, current)
    commit(node, path, NEW, current)
    assert node.list_backups([path])[path][0] == current
    node.cleanup([path], current, keep_backups=2)
    assert node.list_backups([path]) == {path: [current, "20250101T000003Z-aaaaaa"]}
    node.cleanup([path], current, keep_backups=0)
    assert node.list_backups([path]) == {path: [current]}, "never the run in progress"
    assert Path(backup_path(path, current)).read_bytes() == OLD


CONTRACT_CASES: list[ContractCase] = [
    read_reports_content_hash_mtime_and_missing,
    read_of_directory_is_an_error_state,
    full_cycle_keeps_byte_identical_backup,
    commit_replaces_several_files_in_one_call,
    stage_refuses_a_changed_file_and_writes_nothing,
    stage_of_a_missing_file_is_not_found,
    stage_of_a_directory_is_is_directory,
    arm_then_abort_touches_nothing,
    commit_refuses_when_live_changed_after_stage,
    commit_without_staging_is_refused,
    rollback_restores_byte_identical_and_keeps_backup,
    cleanup_prunes_backups_beyond_retention,
    binary_content_and_unicode_names_round_trip,
    errors_never_carry_file_contents,
    invalid_run_id_is_refused,
    read_gives_one_file_one_id_whatever_the_path,
    read_refuses_devices_and_oversized_files_without_reading_them,
    commit_never_replaces_an_existing_backup,
    rollback_fences_a_released_commit_that_has_not_landed,
    rollback_acts_on_what_the_live_file_holds,
    backups_are_ordered_by_run_id_not_by_file_time,
]


def case_id(case: ContractCase) -> str:
    return case.__name__


# --- a reference driver of the stdin protocol -----------------------------------------------


class ProcessArmedCommit(ArmedCommit):
    def __init__(self, node: ProcessAgentNode, proc: subprocess.Popen[bytes], armed: bytes):
        self.node = node
        self.proc = proc
        self.armed = armed
        self.out = b""

    def _finish(self, word: bytes | None) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if word is not None:
            self.proc.stdin.write(word)
        self.proc.stdin.close()
        self.out = self.armed + self.proc.stdout.read()
        self.proc.wait()

    def release(self) -> None:
        self._finish(psagent.COMMIT_WORD)

    def wait(self, timeout: float) -> None:
        psagent.parse_output(self.out, host=self.node.host_name, phase="commit")

    def abort(self) -> None:
        self._finish(psagent.ABORT_WORD)
        assert psagent.parse_output(self.out) == {"aborted": True}


class ProcessAgentNode(NodeOperations):
    """Runs ``argv`` (an agent reading the stdin protocol) once per operation."""

    def __init__(self, argv: Sequence[str], recycle: RecycleSpec | None = None):
        super().__init__("agent-node")
        self.argv = list(argv)
        self.spec = recycle or RecycleSpec()

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _run(self, op: str, args: dict[str, object]) -> dict[str, object]:
        self.round_trips += 1
        done = subprocess.run(
            self.argv, input=psagent.request_line(op, args), capture_output=True, timeout=60
        )
        result = psagent.parse_output(
            done.stdout, host=self.host_name, phase=op, stderr=done.stderr
        )
        assert done.returncode == 0
        return result

    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        return psagent.files_from_result(self._run("read", psagent.read_args(paths)))

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self._run("stage", psagent.stage_args(items, run_id))

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        self.round_trips += 1
        proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(psagent.request_line("commit", psagent.commit_args(items, run_id)))
        proc.stdin.flush()
        reader = psagent.ArmedReader()
        while not (reader.armed or reader.finished):
            line = proc.stdout.readline()
            if not line:
                break
            reader.feed(line)
        if not reader.armed:
            proc.stdin.close()
            proc.wait()
            psagent.parse_output(reader.output, host=self.host_name, phase="commit")
            raise AssertionError("agent neither armed nor failed")
        return ProcessArmedCommit(self, proc, reader.output)

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self._run("rollback", psagent.rollback_args(paths, run_id, expected))

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        self._run("cleanup", psagent.cleanup_args(paths, run_id, keep_backups))

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return psagent.backups_from_result(
            self._run("list_backups", psagent.list_backups_args(paths))
        )

    def recycle(self) -> None:
        self._run("recycle", psagent.recycle_args(self.spec))
