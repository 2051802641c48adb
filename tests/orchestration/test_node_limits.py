"""Deadlines, bounded reads and honest error kinds at the farm level (issue 14, #3 #4 #9 #10).

Each fault is real: an sftp subsystem that sleeps before it starts, a sparse 2 GiB file and a
character device at a managed path, a config directory on a read-only bind mount, backups
dated in 2030.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from farmsync.lab.sshd import SshdNode
from farmsync.nodes.contract import backup_path
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import TestFarm

SLOW_SFTP = """#!/bin/sh
# An sftp subsystem that never answers, and ends once the sshd process serving its
# connection has gone, so it does not outlive the test.
while kill -0 "$PPID" 2>/dev/null; do sleep 1; done
"""


def _set_var(farm: TestFarm, name: str, value: object) -> None:
    document = yaml.safe_load(farm.inventory_path.read_text())
    document["all"]["vars"][name] = value
    farm.inventory_path.write_text(yaml.safe_dump(document, sort_keys=False))


def _restart(
    farm: TestFarm, name: str, request: pytest.FixtureRequest, **options: object
) -> SshdNode:
    old: SshdNode = farm.handles[name]
    port = old.port
    old.stop()
    node = SshdNode(old.directory, keys=old.keys, **options)  # type: ignore[arg-type]
    request.addfinalizer(node.stop)
    node.start(port=port)
    farm.handles[name] = node
    return node


def test_an_sftp_subsystem_that_never_answers_ends_in_a_timeout(
    make_farm: Callable[..., TestFarm], request: pytest.FixtureRequest
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    slow = farm.root / "slow-sftp"
    slow.write_text(SLOW_SFTP)
    slow.chmod(0o755)
    _restart(farm, "web2", request, sftp_subsystem=str(slow))
    _set_var(farm, "farmsync_timeout", 2)

    # The subprocess's own timeout is the bound: before the fix this waited forever.
    done = farm.cli("rotate", "--check", "--json", timeout=60)

    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    web2 = next(h for h in result["hosts"] if h["host"] == "web2")
    assert web2["error_kind"] == "timeout"
    assert farm.files_unchanged()


def test_a_device_or_a_huge_file_at_a_managed_path_is_refused_by_kind(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=1, winrm=1)
    huge = farm.configs["web1"]
    huge.unlink()
    with open(huge, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GiB that would have been read into memory
    for name in ("win3", "iis1"):
        farm.configs[name].unlink()
        farm.configs[name].symlink_to("/dev/zero")

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.NOT_STARTED
    kinds = {h.host: h.error_kind for h in result.hosts}
    assert kinds["web1"] == "too-large"
    assert kinds["win3"] == "not-a-regular-file" and kinds["iis1"] == "not-a-regular-file"
    assert not farm.leftovers()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """``read_only(dir)``: bind-mount ``dir`` on itself read-only; unmounted at teardown."""
    if os.getuid() != 0:
        pytest.fail("the read-only test bind-mounts a directory and must run as root")
    mounted: list[Path] = []

    def mount(directory: Path) -> None:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        mounted.append(directory)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", str(directory)], check=True)


def test_a_read_only_file_system_is_permission_denied_with_no_false_cleanup_failure(
    make_farm: Callable[..., TestFarm], read_only: Callable[[Path], None]
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    read_only(farm.configs["web2"].parent)

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.ABORTED, result.messages
    web2 = result.host("web2")
    assert web2.error_kind == "permission-denied", web2.error
    assert "read-only file system" in (web2.error or "")
    assert not any("cleanup failed" in m for m in result.messages), result.messages
    assert farm.files_unchanged() and not farm.leftovers()


def test_backups_dated_in_the_future_do_not_push_out_this_runs_backup(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=1, ssh_windows=1, winrm=1)
    future = 1_900_000_000  # 2030
    for config in farm.configs.values():
        for i in range(10):
            old = Path(backup_path(str(config), f"20250101T0000{i:02d}Z-aaaaaa"))
            old.write_bytes(b"an old backup")
            os.utime(old, (future + i, future + i))

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.CHANGED, result.messages
    for host, config in farm.configs.items():
        mine = Path(backup_path(str(config), result.run_id))
        assert mine.read_bytes() == farm.originals[host], host
        assert len(farm.backups(host)) == 10  # the oldest run's backup went
        assert not Path(backup_path(str(config), "20250101T000000Z-aaaaaa")).exists()
