"""The journal's batches keep write-ahead: a step's records are durable before it acts.

The fsync is observed, not replaced: the journal is given a ``sync`` that calls ``os.fsync``
and then notes which file and how many of its bytes that made durable. The rollouts run on
real local nodes (``ansible_connection: local``: the node agent's own code on real files),
and hooks on the nodes look at the journal on disk at the moment a step acts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farmsync.inventory.loader import load_inventory
from farmsync.inventory.patterns import select_hosts
from farmsync.keys.generate import generate_key
from farmsync.nodes.contract import sha256_hex
from farmsync.orchestration.events import NullReporter
from farmsync.orchestration.journal import Journal, RunKind, Step, StepResult, new_run_id
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.recorder import RunRecorder
from farmsync.orchestration.result import Outcome, RunResult
from farmsync.orchestration.rollout import Rollout
from farmsync.orchestration.session import FarmSession
from tests.cli.clikit import FARM, make_local_farm
from tests.orchestration.farmkit import hooked_factory

OLD = sha256_hex(b"old web.config")
NEW = sha256_hex(b"new web.config")


@dataclass
class SyncLog:
    """``os.fsync``, noting each time which file and how many of its bytes are now durable."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, fd: int) -> None:
        os.fsync(fd)
        self.calls.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))

    def of(self, path: Path) -> list[int]:
        """The durable sizes of ``path`` after each of its fsyncs."""
        return [size for name, size in self.calls if name == str(path)]


def durable(path: Path, log: SyncLog) -> list[tuple[str, str | None, str | None]]:
    """(event, result, host) of every record that an fsync of ``path`` has covered."""
    sizes = log.of(path)
    data = path.read_bytes()[: max(sizes, default=0)]
    out = []
    for line in data.splitlines():
        rec = json.loads(line)
        out.append((rec["event"], rec.get("result"), rec.get("host")))
    return out


def commit_intent(host: str) -> dict[str, object]:
    return {"host": host, "path": "/w", "old_sha256": OLD, "new_sha256": NEW}


# --- the journal's batch -----------------------------------------------------------------


def test_a_batch_is_one_write_and_one_fsync_made_before_the_block_ends(tmp_path: Path) -> None:
    log = SyncLog()
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, sync=log)
    journal.start_run("run-1", RunKind.ROTATE, hosts={f"web{i}": ["/w"] for i in range(5)})
    seen_by_sync: list[int] = []

    def sync(fd: int) -> None:  # what a reader finds on disk when the batch's fsync returns
        log(fd)
        seen_by_sync.append(len(Journal(path).records()))

    journal.sync = sync
    with journal.batch():
        for i in range(5):
            journal.append("run-1", "rotate", "commit", "started", **commit_intent(f"web{i}"))
        assert len(Journal(path).records()) == 1  # held: nothing written yet
        assert len(log.of(path)) == 1  # the run-start's fsync only

    assert seen_by_sync == [6]  # one fsync, made with all five records on disk, before exit
    assert log.of(path)[-1] == path.stat().st_size
    [run] = Journal(path).unfinished_runs()
    assert all(progress.commit_attempted for progress in run.files.values())


def test_a_batch_ended_by_an_exception_still_writes_what_it_holds(tmp_path: Path) -> None:
    log = SyncLog()
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, sync=log)
    with pytest.raises(RuntimeError, match="node gone"), journal.batch():
        journal.start_run("run-1", RunKind.ROTATE, hosts={"web1": ["/w"]})
        journal.append("run-1", "rotate", "stage", "ok", host="web1", path="/w")
        raise RuntimeError("node gone")

    assert [r["event"] for r in Journal(path).records()] == ["run-start", "stage"]
    assert log.of(path) == [path.stat().st_size]


def test_a_refused_record_inside_a_batch_is_refused_at_once_and_the_rest_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    with pytest.raises(ValueError, match="not allowed"), journal.batch():
        journal.append("run-1", "rotate", "stage", "ok", host="web1")
        journal.append("run-1", "rotate", "stage", "ok", password="x")
    assert [r.get("host") for r in Journal(path).records()] == ["web1"]


def test_nested_batches_write_once_at_the_outermost_end(tmp_path: Path) -> None:
    log = SyncLog()
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, sync=log)
    with journal.batch():
        journal.append("run-1", "rotate", "stage", "ok", host="web1")
        with journal.batch():
            journal.append("run-1", "rotate", "stage", "ok", host="web2")
        assert not path.exists()
        journal.append("run-1", "rotate", "stage", "ok", host="web3")
    assert [r.get("host") for r in Journal(path).records()] == ["web1", "web2", "web3"]
    assert len(log.of(path)) == 1


def test_another_threads_record_is_written_at_once_not_held_by_a_batch(tmp_path: Path) -> None:
    log = SyncLog()
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, sync=log)
    with journal.batch():
        journal.append("run-1", "rotate", "stage", "ok", host="held")
        worker = threading.Thread(
            target=journal.append, args=("run-1", "rotate", "stage", "ok"), kwargs={"host": "now"}
        )
        worker.start()
        worker.join()
        assert [r.get("host") for r in Journal(path).records()] == ["now"]
    assert [r.get("host") for r in Journal(path).records()] == ["now", "held"]
    assert len(log.of(path)) == 2


def test_a_batch_cut_short_anywhere_reads_as_the_whole_records_before_the_cut(
    tmp_path: Path,
) -> None:
    """What a controller killed during a batch's write can leave: any prefix of its bytes."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.start_run("run-1", RunKind.ROTATE, hosts={f"web{i}": ["/w"] for i in range(4)})
    before = path.read_bytes()
    with journal.batch():
        for i in range(4):
            journal.append("run-1", "rotate", "commit", "started", **commit_intent(f"web{i}"))
    batch = path.read_bytes()[len(before) :]
    ends = [i + 1 for i, byte in enumerate(batch) if byte == ord("\n")]

    cut_path = tmp_path / "cut.jsonl"
    for cut in range(len(batch) + 1):
        cut_path.write_bytes(before + batch[:cut])
        cut_journal = Journal(cut_path)
        records = cut_journal.records()
        # A cut inside a record's JSON leaves a torn tail; one just before its newline leaves
        # a complete record, which is kept.
        whole = sum(1 for end in ends if end <= cut + 1)
        assert len(records) == 1 + whole, cut
        assert cut_journal.damage == []
        assert cut_journal.torn_tail == (cut not in [0, *ends] and cut + 1 not in ends)
        if cut in (ends[0] - 5, ends[1] + 3):
            # The next writer cuts the torn line off; whole records before it stay.
            cut_journal.end_run("run-1", RunKind.ROTATE, StepResult.FAILED)
            assert len(Journal(cut_path).records()) == 2 + whole
            assert Journal(cut_path).damage == [] and not Journal(cut_path).torn_tail


KILLED_IN_A_BATCH = """
import os, sys, time
from farmsync.orchestration.journal import Journal
where = sys.argv[2]
batching = False

def sync(fd):
    os.fsync(fd)
    if where == "fsync" and batching:
        print("in fsync", flush=True)
        time.sleep(60)

j = Journal(sys.argv[1], sync=sync)
j.start_run("run-1", "rotate", hosts={"web1": ["/w"], "web2": ["/w"]}, target_fp="mk-11bb")
batching = True
with j.batch():
    for host in ("web1", "web2"):
        j.append("run-1", "rotate", "commit", "started", host=host, path="/w",
                 old_sha256="a" * 64, new_sha256="b" * 64)
    if where == "block":
        print("in block", flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize(("where", "intents"), [("block", 0), ("fsync", 2)])
def test_a_controller_killed_in_a_batch_leaves_none_or_all_of_its_records(
    tmp_path: Path, where: str, intents: int
) -> None:
    """SIGKILL inside the block (nothing written yet) or in its fsync (everything written)."""
    path = tmp_path / "journal.jsonl"
    script = textwrap.dedent(KILLED_IN_A_BATCH)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path), where], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"in {where}\n".encode()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    journal = Journal(path)
    [run] = journal.unfinished_runs()
    assert journal.damage == [] and not journal.torn_tail
    assert sum(p.commit_attempted for p in run.files.values()) == intents
    assert run.commit_attempted == bool(intents)


# --- a rollout's batches, on real local nodes ----------------------------------------------


@dataclass
class Observed:
    """A rollout over local nodes whose journal's fsyncs are logged, with node hooks."""

    journal_path: Path
    log: SyncLog
    result: RunResult
    hosts: list[str]
    seen: dict[str, list[list[tuple[str, str | None, str | None]]]]


def observed_rollout(
    tmp_path: Path,
    count: int,
    hooks: Callable[[Callable[[str], None]], dict[str, dict[str, Callable[[], None]]]],
) -> Observed:
    """Rotate ``count`` local hosts; ``hooks(look)`` gives node hooks, where ``look(name)``
    notes, under ``name``, the records an fsync has made durable at that moment."""
    farm = make_local_farm(tmp_path / "farm", {"web": [f"web{i + 1}" for i in range(count)]})
    inventory = load_inventory(farm.inventory)
    hosts = select_hosts(inventory, None)
    state = tmp_path / "state"
    state.mkdir()
    log = SyncLog()
    path = state / "journal.jsonl"
    journal = Journal(path, sync=log)
    seen: dict[str, list[list[tuple[str, str | None, str | None]]]] = {}
    lock = threading.Lock()

    def look(name: str) -> None:
        with lock:  # hooks run on the pool's workers
            seen.setdefault(name, []).append(durable(path, log))

    run_id = new_run_id()
    result = RunResult(run_id, RunKind.ROTATE, FARM, Outcome.UNCHANGED)
    options = RolloutOptions(forks=4, timeout=20)
    with FarmSession(
        hosts, forks=options.forks, reporter=NullReporter(), factory=hooked_factory(hooks(look))
    ) as session:
        Rollout(
            session, result, RunRecorder(journal, run_id, RunKind.ROTATE), NullReporter(), options
        ).run(generate_key(), hosts)
    return Observed(path, log, result, [h.name for h in hosts], seen)


def records_of(seen: Sequence[tuple[str, str | None, str | None]], event: str, result: str) -> set:
    return {host for e, r, host in seen if e == event and r == result}


def test_the_run_start_and_reads_are_durable_before_any_node_is_staged(tmp_path: Path) -> None:
    run = observed_rollout(
        tmp_path,
        4,
        lambda look: {f"web{i}": {"stage": lambda: look("stage")} for i in (1, 2, 3, 4)},
    )
    assert run.result.outcome is Outcome.CHANGED, run.result.to_dict()
    assert len(run.seen["stage"]) == 4
    for seen in run.seen["stage"]:
        assert seen[0][0] == Step.RUN_START
        assert records_of(seen, Step.READ, StepResult.OK) == set(run.hosts)


def test_every_commit_intent_is_durable_before_the_first_release(tmp_path: Path) -> None:
    run = observed_rollout(
        tmp_path,
        5,
        lambda look: {f"web{i}": {"release": lambda: look("release")} for i in range(1, 6)},
    )
    assert run.result.outcome is Outcome.CHANGED, run.result.to_dict()
    first = run.seen["release"][0]
    assert records_of(first, Step.COMMIT, StepResult.STARTED) == set(run.hosts)
    assert records_of(first, Step.COMMIT, StepResult.OK) == set()  # nothing released yet


def test_every_rollback_intent_is_durable_before_any_rollback(tmp_path: Path) -> None:
    def refuse() -> None:
        raise OSError("the node refused the release")

    def hooks(look: Callable[[str], None]) -> dict[str, dict[str, Callable[[], None]]]:
        out = {f"web{i}": {"rollback": lambda: look("rollback")} for i in (1, 2, 3, 4)}
        out["web3"]["release"] = refuse
        return out

    run = observed_rollout(tmp_path, 4, hooks)

    assert run.result.outcome is Outcome.ROLLED_BACK, run.result.to_dict()
    assert len(run.seen["rollback"]) == 4
    first = run.seen["rollback"][0]
    assert records_of(first, Step.ROLLBACK, StepResult.STARTED) == set(run.hosts)
    assert records_of(first, Step.ROLLBACK, StepResult.OK) == set()


def test_the_journal_is_fsynced_per_step_not_per_host(tmp_path: Path) -> None:
    one = observed_rollout(tmp_path / "one", 1, lambda look: {})
    six = observed_rollout(tmp_path / "six", 6, lambda look: {})

    assert one.result.outcome is six.result.outcome is Outcome.CHANGED
    assert len(six.log.of(six.journal_path)) == len(one.log.of(one.journal_path))
    # The same records, in the same order of steps, as one append at a time wrote them.
    events = [(r["event"], r.get("result")) for r in Journal(six.journal_path).records()]
    steps = [
        ("run-start", "started"),
        ("read", "ok"),
        ("stage", "ok"),
        ("arm", "ok"),
        ("commit", "started"),
        ("commit", "ok"),
        ("verify", "ok"),
    ]
    assert events == [steps[0], *[s for s in steps[1:] for _ in range(6)], ("run-end", "ok")]
    # Every byte of the journal was covered by an fsync.
    assert six.log.of(six.journal_path)[-1] == six.journal_path.stat().st_size
