"""Ctrl-C and SIGTERM as a decision: a real controller process gets a real signal at a known
point of a rotation over real sshd nodes; it withdraws (before the release) or finishes the
barrier and rolls back (after it), says so, and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.orchestration.journal import Journal
from tests.orchestration.farmkit import TestFarm


def journal_of(farm: TestFarm) -> Path:
    return Path(farm.env["FARMSYNC_STATE_DIR"]) / farm.context().farm / "journal.jsonl"


def interrupted_run(
    farm: TestFarm, host: str, hook: str, sig: int
) -> tuple[int, dict[str, object]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.orchestration.interrupted_controller",
            str(farm.inventory_path),
            host,
            hook,
        ],
        env={**os.environ, **farm.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WAITING", (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err, err
    return proc.returncode, json.loads(out)


@pytest.mark.parametrize(("hook", "sig"), [("stage", signal.SIGINT), ("arm", signal.SIGTERM)])
def test_a_signal_before_the_release_withdraws_and_cleans_up(
    make_farm: Callable[..., TestFarm], hook: str, sig: int
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)

    code, result = interrupted_run(farm, "web2", hook, sig)

    assert code == 130, result
    assert result["interrupted"] == signal.Signals(sig).name
    assert result["outcome"] == "aborted" and result["exit_code"] == 130
    (said,) = [m for m in result["messages"] if str(m).startswith("interrupted by")]
    assert "before any live file changed" in str(said) and "Next:" in str(said)
    assert farm.files_unchanged()
    assert not farm.leftovers()
    assert not Journal(journal_of(farm)).unfinished_runs()


def test_a_signal_during_the_release_finishes_the_barrier_then_rolls_back(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)

    code, result = interrupted_run(farm, "web2", "released", signal.SIGINT)

    assert code == 130, result
    assert result["outcome"] == "rolled-back"
    (said,) = [m for m in result["messages"] if str(m).startswith("interrupted by")]
    assert "during the commit" in str(said) and "rolled every changed node back" in str(said)
    # Every node released, acknowledged, then put back byte for byte.
    assert farm.files_unchanged()
    assert not farm.leftovers()
    assert not Journal(journal_of(farm)).unfinished_runs()
