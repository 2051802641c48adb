"""The run journal on real files: durability format, torn lines, recovery state, secrecy guard."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from farmsync.keys.generate import generate_key
from farmsync.nodes.contract import sha256_hex
from farmsync.orchestration.journal import (
    DETAIL_MAX_BYTES,
    REDACTED,
    Journal,
    JournalRecordError,
    RunKind,
    Step,
    StepResult,
    new_run_id,
)

OLD = sha256_hex(b"old web.config")
NEW = sha256_hex(b"new web.config")
HOSTS = {"web1": ["/srv/a/web.config", "/srv/b/web.config"], "web2": ["/srv/a/web.config"]}


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def _stage_all(j: Journal, run: str) -> None:
    for host, paths in HOSTS.items():
        for path in paths:
            j.append(
                run, RunKind.ROTATE, Step.READ, StepResult.OK, host=host, path=path, old_sha256=OLD
            )
            j.append(
                run,
                RunKind.ROTATE,
                Step.STAGE,
                StepResult.OK,
                host=host,
                path=path,
                old_sha256=OLD,
                new_sha256=NEW,
                old_fp="mk-00aa",
                new_fp="mk-11bb",
            )


def test_records_are_json_lines_with_the_documented_fields(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.ROTATE, hosts=HOSTS, target_fp="mk-11bb", previous_fp="mk-00aa")
    journal.append(
        run,
        RunKind.ROTATE,
        Step.COMMIT,
        StepResult.OK,
        host="web1",
        path="/srv/a/web.config",
        elapsed_ms=12,
    )
    journal.end_run(run, RunKind.ROTATE, StepResult.OK, elapsed_ms=40)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    raw = journal.path.read_text().splitlines()
    assert len(raw) == 3
    start, commit, end = (json.loads(line) for line in raw)
    assert start["event"] == "run-start" and start["hosts"] == HOSTS
    assert start["target_fp"] == "mk-11bb" and start["previous_fp"] == "mk-00aa"
    assert start["pid"] == os.getpid() and start["controller"]
    assert commit == {
        "ts": commit["ts"],
        "run_id": run,
        "kind": "rotate",
        "event": "commit",
        "result": "ok",
        "host": "web1",
        "path": "/srv/a/web.config",
        "elapsed_ms": 12,
    }
    assert end["event"] == "run-end" and end["result"] == "ok"
    assert journal.unfinished_runs() == []
    [summary] = journal.runs()
    assert summary.finished and summary.result == "ok" and summary.run_id == run


def test_unfinished_run_is_reconstructed_per_host_and_file(journal: Journal) -> None:
    done = new_run_id()
    journal.start_run(done, RunKind.SYNC, hosts={"web1": ["/x"]})
    journal.end_run(done, RunKind.SYNC, StepResult.OK)

    run = "20250101T000000Z-abcdef"
    journal.start_run(run, RunKind.ROTATE, hosts=HOSTS, target_fp="mk-11bb", previous_fp="mk-00aa")
    _stage_all(journal, run)
    journal.append(run, RunKind.ROTATE, Step.ARM, StepResult.OK, host="web1")
    journal.append(run, RunKind.ROTATE, Step.ARM, StepResult.OK, host="web2")
    # The intent record for the whole farm, then one host reports back before the crash.
    journal.append(run, RunKind.ROTATE, Step.COMMIT, StepResult.STARTED)
    journal.append(run, RunKind.ROTATE, Step.COMMIT, StepResult.OK, host="web2")

    [state] = journal.unfinished_runs()
    assert state.run_id == run and state.kind == "rotate"
    assert state.target_fp == "mk-11bb" and state.previous_fp == "mk-00aa"
    assert state.hosts == {h: tuple(ps) for h, ps in HOSTS.items()}
    assert set(state.files) == {(h, p) for h, ps in HOSTS.items() for p in ps}
    assert state.commit_attempted and not state.all_committed and not state.finished
    assert state.last_event == "commit"
    web2 = state.files[("web2", "/srv/a/web.config")]
    assert web2.staged and web2.committed and web2.commit_attempted
    assert (web2.old_sha256, web2.new_sha256) == (OLD, NEW)
    for path in HOSTS["web1"]:
        web1 = state.files[("web1", path)]
        assert web1.staged and web1.commit_attempted and not web1.committed
        assert not web1.rolled_back and web1.last[Step.ARM] == "ok"
        assert (web1.old_sha256, web1.new_sha256) == (OLD, NEW)

    # Recovery rolls web2 back and closes the run: nothing is left unfinished.
    journal.append(run, RunKind.ROTATE, Step.ROLLBACK, StepResult.OK, host="web2")
    state = journal.run(run)  # type: ignore[assignment]
    assert state is not None and state.files[("web2", "/srv/a/web.config")].rolled_back
    journal.end_run(run, RunKind.ROTATE, StepResult.FAILED, detail="rolled back by recover")
    assert journal.unfinished_runs() == []
    assert journal.run(run).end_detail == "rolled back by recover"  # type: ignore[union-attr]


def test_run_before_any_commit_has_nothing_committed(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.ROTATE, hosts=HOSTS)
    journal.append(
        run,
        RunKind.ROTATE,
        Step.STAGE,
        StepResult.FAILED,
        host="web2",
        path="/srv/a/web.config",
        error_kind="disk-full",
        detail="no space",
    )
    [state] = journal.unfinished_runs()
    assert not state.commit_attempted
    assert state.failed_hosts == ["web2"]
    assert not state.files[("web2", "/srv/a/web.config")].staged


def test_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.ROTATE, hosts=HOSTS)
    _stage_all(journal, run)
    good = journal.path.read_bytes()
    # What a SIGKILL in the middle of the commit record's write leaves behind.
    with journal.path.open("ab") as f:
        f.write(b'{"ts":"2025-01-01T00:00:00+00:00","run_id":"' + run.encode() + b'","ki')
    [state] = journal.unfinished_runs()
    assert not state.commit_attempted and journal.damaged_lines == []
    assert len(journal.records()) == 1 + 2 * 3

    journal.append(run, RunKind.ROTATE, Step.COMMIT, StepResult.STARTED)
    lines = journal.path.read_bytes()
    assert lines.startswith(good) and lines.count(b"\n") == good.count(b"\n") + 1
    assert all(json.loads(line) for line in lines.splitlines())
    assert journal.unfinished_runs()[0].commit_attempted


def test_complete_last_record_missing_only_its_newline_is_kept(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.SYNC, hosts={"web1": ["/x"]})
    journal.path.write_bytes(journal.path.read_bytes().rstrip(b"\n"))
    assert [r["event"] for r in journal.records()] == ["run-start"]
    journal.end_run(run, RunKind.SYNC, StepResult.OK)
    assert [r["event"] for r in journal.records()] == ["run-start", "run-end"]
    assert journal.unfinished_runs() == []


def test_damaged_line_in_the_middle_is_skipped_and_reported(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.SYNC, hosts={"web1": ["/x"]})
    with journal.path.open("ab") as f:
        f.write(b"\x00\xffgarbage\n")
    journal.end_run(run, RunKind.SYNC, StepResult.OK)
    assert journal.unfinished_runs() == []
    assert journal.damaged_lines == [2]


def test_writer_sigkilled_mid_run_leaves_a_recoverable_journal(tmp_path: Path) -> None:
    """A real controller process killed after its commit intent was fsynced."""
    path = tmp_path / "journal.jsonl"
    script = textwrap.dedent(
        """
        import sys, time
        from farmsync.orchestration.journal import Journal
        j = Journal(sys.argv[1])
        j.start_run("run-1", "rotate", hosts={"web1": ["/w"]}, target_fp="mk-11bb")
        j.append("run-1", "rotate", "stage", "ok", host="web1", path="/w",
                 old_sha256="a" * 64, new_sha256="b" * 64)
        j.append("run-1", "rotate", "commit", "started")
        print("committing", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"committing\n"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    [state] = Journal(path).unfinished_runs()
    progress = state.files[("web1", "/w")]
    assert state.target_fp == "mk-11bb" and progress.commit_attempted
    assert not progress.committed and progress.new_sha256 == "b" * 64


# --- secrecy guard -----------------------------------------------------------------------

KEY_HEX = "A1" * 64  # a 128-hex validationKey


@pytest.mark.parametrize("field", ["host", "path", "old_fp", "new_fp", "error_kind"])
def test_guard_refuses_key_material_in_structured_fields(journal: Journal, field: str) -> None:
    with pytest.raises(JournalRecordError, match=field) as caught:
        journal.append("run-1", "rotate", "stage", "ok", **{field: f"x{KEY_HEX}y"})
    assert KEY_HEX not in str(caught.value)
    assert not journal.path.exists()  # nothing was written


def test_guard_refuses_key_material_inside_the_host_map(journal: Journal) -> None:
    with pytest.raises(JournalRecordError, match="hosts"):
        journal.start_run("run-1", "rotate", hosts={"web1": [f"/{KEY_HEX}/web.config"]})


def test_guard_redacts_key_material_in_free_text(journal: Journal) -> None:
    rec = journal.append(
        "run-1",
        "rotate",
        "stage",
        "failed",
        detail=f"remote said validationKey={KEY_HEX.lower()} is bad",
    )
    assert rec["detail"] == f"remote said validationKey={REDACTED} is bad"
    assert KEY_HEX.lower() not in journal.path.read_text()


def test_hash_fields_take_exactly_a_sha256(journal: Journal) -> None:
    journal.append("run-1", "rotate", "read", "ok", old_sha256=OLD)
    # No hash (a file that does not exist yet) is the same as leaving the field out.
    assert "old_sha256" not in journal.append("run-1", "rotate", "read", "ok", old_sha256="")
    for bad in (KEY_HEX, OLD.upper(), OLD[:-1], "not a hash"):
        with pytest.raises(JournalRecordError, match="old_sha256"):
            journal.append("run-1", "rotate", "read", "ok", old_sha256=bad)


def test_forbidden_values_are_refused_even_where_hashes_are_allowed(journal: Journal) -> None:
    key = generate_key()
    journal.forbid(key.validation_key, key.decryption_key)
    # An AES-256 decryptionKey is 64 hex digits: the shape of a hash.
    with pytest.raises(JournalRecordError, match="new_sha256"):
        journal.append("run-1", "rotate", "stage", "ok", new_sha256=key.decryption_key.lower())
    rec = journal.append(
        "run-1",
        "rotate",
        "stage",
        "failed",
        detail=f"got {key.decryption_key[:40]}.. {key.decryption_key}",
    )
    assert key.decryption_key not in str(rec["detail"])
    journal.append("run-1", "rotate", "stage", "ok", new_fp=key.fingerprint())
    text = journal.path.read_text()
    assert key.fingerprint() in text
    assert key.decryption_key.lower() not in text.lower()
    assert key.validation_key.lower() not in text.lower()


@pytest.mark.parametrize(
    "fields",
    [
        {"validationKey": "00"},  # not a journal field
        {"elapsed_ms": -1},
        {"elapsed_ms": "12"},
        {"host": 3},
        {"hosts": {"web1": "/not-a-list"}},
    ],
)
def test_whitelist_refuses_unknown_fields_and_wrong_types(
    journal: Journal, fields: dict[str, object]
) -> None:
    with pytest.raises(JournalRecordError):
        journal.append("run-1", "rotate", "read", "ok", **fields)


def test_kind_event_result_and_run_id_are_checked(journal: Journal) -> None:
    with pytest.raises(JournalRecordError, match="result"):
        journal.append("run-1", "rotate", "read", "maybe")
    with pytest.raises(JournalRecordError, match="kind"):
        journal.append("run-1", "deploy", "read", "ok")
    with pytest.raises(JournalRecordError, match="event"):
        journal.append("run-1", "rotate", "explode", "ok")
    with pytest.raises(JournalRecordError, match="run_id"):
        journal.append("../run", "rotate", "read", "ok")


def test_new_run_ids_are_unique_file_name_safe_and_pass_the_guard(journal: Journal) -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        journal.append(run_id, "sync", "read", "skipped")


def test_threads_appending_at_once_never_tear_or_drop_records(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.ROTATE, hosts={f"web{i}": ["/w"] for i in range(8)})

    def work(i: int) -> None:
        for step in (Step.READ, Step.STAGE, Step.ARM):
            journal.append(
                run,
                RunKind.ROTATE,
                step,
                StepResult.OK,
                host=f"web{i}",
                path="/w",
                detail="x" * 500,
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    assert len(journal.records()) == 1 + 8 * 3 and journal.damaged_lines == []
    [state] = journal.unfinished_runs()
    assert all(f.last[Step.ARM] == "ok" for f in state.files.values())


# --- lines the journal cannot use ----------------------------------------------------------


def test_a_record_the_whitelist_refuses_is_a_damaged_line_not_a_run(journal: Journal) -> None:
    run = new_run_id()
    journal.start_run(run, RunKind.SYNC, hosts={"web1": ["/x"]})
    journal.end_run(run, RunKind.SYNC, StepResult.OK)
    no_kind = {"ts": "t", "run_id": "forged-1", "event": "run-start"}
    unknown_field = {**_record("forged-2", "read"), "validationKey": "00"}
    with journal.path.open("ab") as f:
        f.write(json.dumps(no_kind).encode() + b"\n" + json.dumps(unknown_field).encode() + b"\n")

    assert [r.run_id for r in journal.runs()] == [run]
    assert journal.unfinished_runs() == []
    assert [(d.line, d.run_id) for d in journal.damage] == [(3, "forged-1"), (4, "forged-2")]
    assert journal.damage[0].problem == "journal record lacks 'kind'"
    assert journal.damage[1].problem == "journal field 'validationKey' is not allowed"
    report = journal.damage_report()
    assert report[0].startswith(f"journal {journal.path} line 3 is damaged and was ignored")
    assert "move those lines" in report[-1]


def _record(run: str, event: str, **fields: object) -> dict[str, object]:
    return {"ts": "t", "run_id": run, "kind": "rotate", "event": event, **fields}


def test_a_run_whose_start_is_lost_is_rebuilt_and_assumed_released(journal: Journal) -> None:
    run = "20250101T000000Z-abcdef"
    journal.start_run(run, RunKind.ROTATE, hosts=HOSTS, target_fp="mk-11bb")
    _stage_all(journal, run)
    lines = journal.path.read_bytes().splitlines(keepends=True)
    lines[0] = b'{"run-start", torn by bit rot\n'
    journal.path.write_bytes(b"".join(lines))

    [state] = journal.unfinished_runs()

    assert state.run_id == run and state.start_missing and not state.complete
    assert set(state.files) == {(h, p) for h, ps in HOSTS.items() for p in ps}
    assert state.commit_attempted  # its commit records may be what was lost
    assert [(d.line, d.run_id) for d in journal.damage] == [(1, None)]


def test_a_run_left_without_an_end_before_a_later_run_is_superseded(journal: Journal) -> None:
    first, second = "20250101T000000Z-000001", "20250101T000000Z-000002"
    journal.start_run(first, RunKind.ROTATE, hosts={"web1": ["/x"]})
    journal.start_run(second, RunKind.ROTATE, hosts={"web1": ["/x"]})

    older, newer = journal.unfinished_runs()

    assert (older.run_id, older.superseded_by) == (first, second)
    assert newer.superseded_by is None and newer.complete


def test_a_damaged_line_counts_against_the_runs_open_at_that_line(journal: Journal) -> None:
    done, open_run = "20250101T000000Z-000001", "20250101T000000Z-000002"
    journal.start_run(done, RunKind.SYNC, hosts={"web1": ["/x"]})
    journal.end_run(done, RunKind.SYNC, StepResult.OK)
    journal.start_run(open_run, RunKind.ROTATE, hosts={"web1": ["/x"]})
    with journal.path.open("ab") as f:
        f.write(b"\xff\xfe no run named here\n")
    journal.append(open_run, RunKind.ROTATE, Step.READ, StepResult.OK, host="web1", path="/x")

    runs = {r.run_id: r for r in journal.runs()}

    assert runs[done].complete and runs[done].damaged_lines == []
    assert runs[open_run].damaged_lines == [4] and runs[open_run].commit_attempted


def test_details_are_capped_in_bytes_whatever_their_characters(journal: Journal) -> None:
    rec = journal.append("run-1", "rotate", "stage", "failed", detail="\x1b" * 1999)
    encoded = json.dumps(rec["detail"], ensure_ascii=False).encode()
    assert len(encoded) <= DETAIL_MAX_BYTES and str(rec["detail"]).endswith("...")
