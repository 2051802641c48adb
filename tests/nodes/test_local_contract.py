"""LocalNode (the ``local`` transport) against the shared contract cases, on real files."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest

from farmsync.errors import NodeErrorKind
from farmsync.inventory.model import Host, RecycleKind, RecycleSpec, Shell, Transport
from farmsync.nodes.contract import CommitItem, FileStatus, NodeOperations
from farmsync.nodes.local import LocalNode
from tests.nodes.contract_cases import (
    CONTRACT_CASES,
    NEW,
    OLD,
    ContractCase,
    case_id,
    expect_node_error,
    live,
    sha,
    stage,
)


def local_host(recycle: RecycleSpec | None = None, timeout: float = 30.0) -> Host:
    return Host(
        name="web-local",
        farm="farm",
        transport=Transport.LOCAL,
        address="localhost",
        port=0,
        shell=Shell.POSIX,
        recycle=recycle or RecycleSpec(),
        timeout=timeout,
    )


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_local_node_contract(case: ContractCase, tmp_path: Path) -> None:
    with LocalNode(local_host()) as node:
        case(node, tmp_path)


def test_errors_name_the_host_and_phase(tmp_path: Path) -> None:
    node: NodeOperations = LocalNode(local_host())
    path = live(tmp_path, content=NEW)
    err = expect_node_error(NodeErrorKind.CHANGED, lambda: stage(node, path, NEW, "run1"))
    assert (err.host, err.phase, err.path) == ("web-local", "stage", path)


def test_release_failure_surfaces_at_wait(tmp_path: Path) -> None:
    node = LocalNode(local_host())
    path = live(tmp_path)
    stage(node, path, NEW, "run1")
    armed = node.arm_commit([CommitItem(path, sha(OLD), sha(NEW))], "run1")
    Path(path).write_bytes(b"changed between arm and release")
    armed.release()  # does not raise: the orchestrator releases every node back to back
    expect_node_error(NodeErrorKind.CHANGED, lambda: armed.wait(5))
    assert Path(path).read_bytes() == b"changed between arm and release"


def test_recycle_command_runs_and_failure_is_reported(tmp_path: Path) -> None:
    marker = tmp_path / "recycled"
    LocalNode(local_host(RecycleSpec(RecycleKind.COMMAND, f"touch '{marker}'"))).recycle()
    assert marker.exists()
    failing = LocalNode(local_host(RecycleSpec(RecycleKind.COMMAND, "exit 3")))
    err = expect_node_error(NodeErrorKind.REMOTE, failing.recycle)
    assert "status 3" in err.detail
    LocalNode(local_host()).recycle()  # kind none: nothing to do


def test_recycle_iis_without_iis_is_not_found(tmp_path: Path) -> None:
    # The same kind recycle.ps1 reports when Microsoft.Web.Administration is absent.
    node = LocalNode(local_host(RecycleSpec(RecycleKind.IIS)))
    err = expect_node_error(NodeErrorKind.NOT_FOUND, node.recycle)
    assert "IIS is not installed" in err.detail


def test_recycle_command_that_hangs_times_out_and_is_stopped(tmp_path: Path) -> None:
    # The command's child outlives the shell unless the whole process group is stopped.
    pidfile = tmp_path / "child.pid"
    command = f"sleep 600 & echo $! > '{pidfile}'; wait"
    node = LocalNode(local_host(RecycleSpec(RecycleKind.COMMAND, command), timeout=0.5))
    err = expect_node_error(NodeErrorKind.TIMEOUT, node.recycle)
    assert err.phase == "recycle"
    # Killed at once: wait for its exit as an event (a pidfd), not by polling.
    try:
        exited = os.pidfd_open(int(pidfile.read_text()))
    except ProcessLookupError:
        return  # already gone
    try:
        ready, _, _ = select.select([exited], [], [], 30)
    finally:
        os.close(exited)
    assert ready, "the recycle command's child is still running"


def test_read_of_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "web.config"
    os.mkfifo(fifo)
    with LocalNode(local_host()) as node:
        state = node.read([str(fifo)])[str(fifo)]
    assert state.status is FileStatus.ERROR
    assert state.error is not None and "not a regular file" in state.error
