"""SshNode phases against a real sshd: read, stage, commit, rollback, cleanup, backups."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import RecycleKind, RecycleSpec
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.ssh import SshNode
from tests.servers.sshd_fixtures import SAMPLE_WEB_CONFIG, SshdTestNode

NEW = SAMPLE_WEB_CONFIG.replace(b"0F1E2D3C", b"AAAABBBB")


def _stage_commit(node: SshNode, paths: list[Path], run_id: str, new: bytes = NEW) -> None:
    states = node.read([str(p) for p in paths])
    node.stage([StageItem(str(p), new, states[str(p)].sha256 or "") for p in paths], run_id)
    node.commit(
        [CommitItem(str(p), states[str(p)].sha256 or "", sha256_hex(new)) for p in paths], run_id
    )


def test_read_reports_content_hash_mtime_and_missing(sshd_node: SshdTestNode) -> None:
    missing = sshd_node.web_root / "nope.config"
    with SshNode(sshd_node.host()) as node:
        states = node.read([str(sshd_node.config), str(missing)])
    ok = states[str(sshd_node.config)]
    assert ok.status is FileStatus.OK
    assert ok.content == SAMPLE_WEB_CONFIG
    assert ok.sha256 == sha256_hex(SAMPLE_WEB_CONFIG)
    assert ok.mtime == pytest.approx(sshd_node.config.stat().st_mtime, abs=1)
    assert states[str(missing)].status is FileStatus.MISSING
    assert node.round_trips == 1


def test_full_rotation_round_trip(sshd_node: SshdTestNode) -> None:
    live, app = sshd_node.config, sshd_node.app_config
    live.chmod(0o640)
    app.chmod(0o600)
    paths = [str(live), str(app)]
    with SshNode(sshd_node.host()) as node:
        states = node.read(paths)
        node.stage([StageItem(p, NEW, states[p].sha256 or "") for p in paths], "r1")
        for p in paths:
            staged = Path(staging_path(p, "r1"))
            assert staged.read_bytes() == NEW
            assert stat.S_IMODE(staged.stat().st_mode) == stat.S_IMODE(os.stat(p).st_mode)
        assert live.read_bytes() == SAMPLE_WEB_CONFIG  # staging leaves the live file alone
        node.commit([CommitItem(p, states[p].sha256 or "", sha256_hex(NEW)) for p in paths], "r1")
        for p, mode in ((live, 0o640), (app, 0o600)):
            assert p.read_bytes() == NEW
            assert stat.S_IMODE(p.stat().st_mode) == mode
            backup = Path(backup_path(str(p), "r1"))
            assert backup.read_bytes() == states[str(p)].content  # byte-identical
            assert stat.S_IMODE(backup.stat().st_mode) == mode
            assert not Path(staging_path(str(p), "r1")).exists()
        assert node.read(paths)[str(live)].sha256 == sha256_hex(NEW)  # verify
        node.rollback(paths, "r1")
        assert live.read_bytes() == SAMPLE_WEB_CONFIG
        assert stat.S_IMODE(live.stat().st_mode) == 0o640
        assert Path(backup_path(str(live), "r1")).exists()  # the backup stays
        assert node.list_backups(paths) == {p: ["r1"] for p in paths}
        node.cleanup(paths, "r1")
        # read, stage, commit, read, rollback, list_backups, cleanup: one round trip each
        assert node.round_trips == 7
    assert sorted(os.listdir(sshd_node.web_root)) == [
        "app",
        "web.config",
        "web.config.farmsync-r1.bak",
    ]


def test_cleanup_prunes_backups_beyond_retention(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        for i in range(4):
            _stage_commit(node, [live], f"run{i}", NEW + str(i).encode())
            t = 1_700_000_000 + i  # distinct mtimes, oldest first
            os.utime(backup_path(str(live), f"run{i}"), (t, t))
        assert node.list_backups([str(live)]) == {str(live): ["run3", "run2", "run1", "run0"]}
        node.cleanup([str(live)], "run3", keep_backups=2)
        assert node.list_backups([str(live)]) == {str(live): ["run3", "run2"]}


def test_stage_refuses_when_live_file_changed(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        before = node.read([str(live), str(sshd_node.app_config)])
        live.write_bytes(SAMPLE_WEB_CONFIG + b"<!-- edited -->")
        app = str(sshd_node.app_config)
        items = [
            StageItem(app, NEW, before[app].sha256 or ""),
            StageItem(str(live), NEW, before[str(live)].sha256 or ""),
        ]
        with pytest.raises(NodeError) as err:
            node.stage(items, "r1")
    assert err.value.kind is NodeErrorKind.CHANGED
    assert err.value.path == str(live)
    assert err.value.host == "web1"
    assert not Path(staging_path(str(sshd_node.app_config), "r1")).exists()  # nothing written


def test_commit_refuses_when_live_changed_after_staging(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        h = node.read([str(live)])[str(live)].sha256 or ""
        node.stage([StageItem(str(live), NEW, h)], "r1")
        live.write_bytes(b"<configuration/>")
        with pytest.raises(NodeError) as err:
            node.arm_commit([CommitItem(str(live), h, sha256_hex(NEW))], "r1")
    assert err.value.kind is NodeErrorKind.CHANGED
    assert live.read_bytes() == b"<configuration/>"
    assert not Path(backup_path(str(live), "r1")).exists()


def test_armed_commit_waits_for_release_and_can_abort(
    sshd_farm: Callable[..., list[SshdTestNode]],
) -> None:
    a, b = sshd_farm(2)
    with SshNode(a.host("a")) as na, SshNode(b.host("b")) as nb:
        armed = []
        for node, farm_node in ((na, a), (nb, b)):
            h = node.read([str(farm_node.config)])[str(farm_node.config)].sha256 or ""
            node.stage([StageItem(str(farm_node.config), NEW, h)], "r1")
            item = CommitItem(str(farm_node.config), h, sha256_hex(NEW))
            armed.append(node.arm_commit([item], "r1"))
        assert a.config.read_bytes() == SAMPLE_WEB_CONFIG  # armed, not yet released
        armed[1].abort()
        armed[0].release()
        armed[0].wait(10)
        assert a.config.read_bytes() == NEW
        assert b.config.read_bytes() == SAMPLE_WEB_CONFIG
        assert Path(staging_path(str(b.config), "r1")).exists()
        assert not Path(backup_path(str(b.config), "r1")).exists()


def test_rollback_without_backup_removes_staging_only(sshd_node: SshdTestNode) -> None:
    live = sshd_node.config
    with SshNode(sshd_node.host()) as node:
        h = node.read([str(live)])[str(live)].sha256 or ""
        node.stage([StageItem(str(live), NEW, h)], "r1")
        node.rollback([str(live)], "r1")
    assert live.read_bytes() == SAMPLE_WEB_CONFIG
    assert not Path(staging_path(str(live), "r1")).exists()


def test_recycle_command_runs_and_reports_failure(sshd_node: SshdTestNode, tmp_path: Path) -> None:
    marker = tmp_path / "recycled"
    ok = RecycleSpec(RecycleKind.COMMAND, f"touch {marker}")
    with SshNode(sshd_node.host(recycle=ok)) as node:
        node.recycle()
    assert marker.exists()
    bad = RecycleSpec(RecycleKind.COMMAND, "exit 3")
    with SshNode(sshd_node.host(recycle=bad)) as node, pytest.raises(NodeError) as err:
        node.recycle()
    assert err.value.kind is NodeErrorKind.REMOTE
    assert "3" in err.value.detail
    with SshNode(sshd_node.host()) as node:
        node.recycle()  # kind none: nothing sent
        assert node.round_trips == 0 and node.sent_commands == []


def test_recycle_that_times_out_closes_its_channel(sshd_node: SshdTestNode) -> None:
    # Never ends by itself; the timeout is long enough for a loaded machine to connect first.
    hang = RecycleSpec(RecycleKind.COMMAND, "exec sleep 600")
    with SshNode(sshd_node.host(recycle=hang, timeout=3)) as node:
        with pytest.raises(NodeError) as err:
            node.recycle()
        assert err.value.kind is NodeErrorKind.TIMEOUT
        transport = node._conn.client.get_transport() if node._conn else None
        assert transport is not None and transport.is_active()
        open_channels = [c for c in transport._channels.values() if not c.closed]
        assert open_channels == []


def test_recycle_timeout_bounds_the_whole_command_not_each_line(
    sshd_node: SshdTestNode,
) -> None:
    # A line every 0.2 s for 10 s: each line is inside the timeout, the whole is not.
    chatty = RecycleSpec(RecycleKind.COMMAND, "for i in $(seq 50); do echo tick; sleep 0.2; done")
    with (
        SshNode(sshd_node.host(recycle=chatty, timeout=3)) as node,
        pytest.raises(NodeError) as err,
    ):
        node.recycle()
    assert err.value.kind is NodeErrorKind.TIMEOUT


def test_recycle_output_on_stderr_cannot_stall_the_command(
    sshd_node: SshdTestNode, tmp_path: Path
) -> None:
    # More stderr than an SSH channel window holds: unread, it would block the command
    # before it reaches its last step, and recycle() would end in a timeout.
    marker = tmp_path / "finished"
    noisy = RecycleSpec(RecycleKind.COMMAND, f"head -c 4000000 /dev/zero >&2; echo done > {marker}")
    with SshNode(sshd_node.host(recycle=noisy, timeout=30)) as node:
        node.recycle()
        assert node.round_trips == 1
    assert marker.read_text() == "done\n"


def test_stage_refuses_a_symlinked_target_instead_of_replacing_the_link(
    sshd_node: SshdTestNode,
) -> None:
    real = sshd_node.config
    link = real.parent / "linked.config"
    link.symlink_to(real)
    before = real.read_bytes()
    with SshNode(sshd_node.host()) as node:
        state = node.read([str(link)])[str(link)]
        assert state.sha256 is not None
        with pytest.raises(NodeError) as info:
            node.stage([StageItem(str(link), b"<configuration/>", state.sha256)], "run1")
    assert "symbolic link" in info.value.detail
    assert link.is_symlink() and real.read_bytes() == before
    assert not list(real.parent.glob("*.farmsync-*"))
