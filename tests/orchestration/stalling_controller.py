"""A real controller process that stalls at a chosen point of its commit, to be SIGKILLed.

Usage: python -m tests.orchestration.stalling_controller INVENTORY HOST before|after|restore:RUN
  before: stall just before releasing HOST's commit (the hosts before it released)
  after:  stall just after releasing HOST's commit (before verification and run end)
  unacked: stall once HOST's release was sent, before its acknowledgement is read
  restore:RUN: restore HOST's backups of run RUN, stalling just before they are put back
Commits are released one host at a time, in inventory order, and each release waits for the
node's acknowledgement, so when "STALLED" is printed every released commit has landed (or
failed) and nothing is still in flight: what the test then sees does not depend on timing.
Sleeps until killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from farmsync import Farm, RolloutOptions
from farmsync.inventory.model import Host
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import ArmedCommit, NodeOperations
from tests.orchestration.farmkit import HookedNode, TestFarm

ACK_TIMEOUT = 60.0


def stall() -> None:
    print("STALLED", flush=True)
    while True:
        time.sleep(60)


class AckedRelease(HookedNode):
    """A real node whose release returns only once the node acknowledged the commit.

    ``stall_when``: ``before`` / ``after`` the acknowledged release, or ``unacked``: just
    after the release was sent, before its acknowledgement is read. Stage and arm go through
    the node's own ``stage_and_arm`` (one ``stage_commit`` exchange on an agent node)."""

    def __init__(self, inner: NodeOperations, stall_when: str | None):
        super().__init__(inner, {})
        self.stall_when = stall_when

    def arm_commit(self, items: Sequence[Any], run_id: str) -> Any:
        return self._held(self.inner.arm_commit(items, run_id))

    def stage_and_arm(
        self, stage_items: Sequence[Any], commit_items: Sequence[Any], run_id: str, keep: int = 10
    ) -> Any:
        return self._held(self.inner.stage_and_arm(stage_items, commit_items, run_id, keep))

    def _held(self, armed: ArmedCommit) -> ArmedCommit:
        when = self.stall_when

        class Armed(ArmedCommit):
            acked = False
            states: Any = None

            def release(self) -> None:
                if when == "before":
                    stall()
                armed.release()
                if when == "unacked":
                    stall()
                self.states = armed.wait(ACK_TIMEOUT)
                self.cleaned_up = armed.cleaned_up
                self.acked = True
                if when == "after":
                    stall()

            def wait(self, timeout: float) -> Any:
                if not self.acked:
                    self.states = armed.wait(timeout)
                    self.cleaned_up = armed.cleaned_up
                return self.states

            def abort(self) -> None:
                armed.abort()

        return Armed()


# --- for the tests: start one and wait until it stalls ------------------------------------


def run_until_stalled(farm: TestFarm, host: str, when: str) -> subprocess.Popen[str]:
    return start_stalled(farm.inventory_path, {**os.environ, **farm.env}, host, when)


def start_stalled(
    inventory: Path, env: Mapping[str, str], host: str, when: str
) -> subprocess.Popen[str]:
    """Start this controller on ``inventory`` and return it once it says STALLED."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.orchestration.stalling_controller",
            str(inventory),
            host,
            when,
        ],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "STALLED":
        proc.kill()
        raise AssertionError(
            f"controller did not stall: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def main() -> None:
    inventory_path, host, when = sys.argv[1], sys.argv[2], sys.argv[3]
    restore_run = when.removeprefix("restore:") if when.startswith("restore:") else None
    assert restore_run or when in ("before", "after", "unacked"), when

    def factory(target: Host) -> NodeOperations:
        if target.name != host:
            return AckedRelease(node_for(target), None)
        if restore_run:
            return HookedNode(node_for(target), {"rollback": stall})
        return AckedRelease(node_for(target), when)

    opened = Farm.open(inventory_path, options=RolloutOptions(forks=1, timeout=30))
    farm = Farm(replace(opened.ctx, factory=factory))
    result = farm.restore(host, restore_run) if restore_run else farm.rotate()
    # Never stalled: say why, for the test that waits for "STALLED".
    print(f"FINISHED {result.outcome.value}: {'; '.join(result.messages)}", flush=True)


if __name__ == "__main__":
    main()
