"""The one allowed skip: a ``needs_root`` test run by someone else says why, in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_needs_root_tests_skip_with_one_reason_when_not_root() -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is part of every Debian system"
    # A new user namespace with no mapping: this process is uid 65534 (nobody) in it.
    done = subprocess.run(
        [
            unshare,
            "--user",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:benchmark",
            "-n",
            "0",
            "-rs",
            "tests/nodes/test_ssh_password_auth.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, done.stdout
    assert skipped[0].endswith(
        "needs root (a tmpfs mount, chattr +i or a local account); CI runs the suite as root"
    )
    assert " passed" not in done.stdout and " failed" not in done.stdout
