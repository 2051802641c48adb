"""The expected key from a real journal file (written through the journal's own API, as the
rollout writes it), else the majority, and since when the farm has held it."""

from __future__ import annotations

from pathlib import Path

from farmsync.orchestration.audit.expected import expected_key, from_journal
from farmsync.orchestration.journal import Journal
from tests.orchestration.audit.support import config, farm_of, hexkey, machine_key

HOSTS = {"web1": ["/srv/web1/web.config"]}


def journal_with(path: Path, runs: list[tuple[str, str, str, str | None]]) -> Journal:
    """(run id, kind, target, end detail or None for an unfinished run)."""
    journal = Journal(path)
    for run_id, kind, target, detail in runs:
        journal.start_run(run_id, kind, hosts=HOSTS, target_fp=target)
        if detail is not None:
            journal.end_run(run_id, kind, "ok", detail=detail)
    return journal


def test_the_last_finished_run_that_changed_the_farm(tmp_path: Path) -> None:
    journal = journal_with(
        tmp_path / "journal.jsonl",
        [
            ("r1", "rotate", "mk-aaaa", "changed"),
            ("r2", "sync", "mk-aaaa", "changed"),  # same key: its age runs from r1
            ("r3", "rotate", "mk-bbbb", "rolled-back"),  # never took
            ("r4", "rotate", "mk-cccc", None),  # unfinished
        ],
    )
    runs = journal.runs()
    expected = from_journal(runs)
    assert expected is not None
    assert (expected.identity, expected.source, expected.run_id) == ("mk-aaaa", "journal", "r2")
    first_end = next(r.ended_at for r in runs if r.run_id == "r1")
    assert expected.since is not None and expected.since.isoformat() == first_end


def test_a_rollback_is_a_new_key_for_the_farm(tmp_path: Path) -> None:
    journal = journal_with(
        tmp_path / "journal.jsonl",
        [
            ("r1", "rotate", "mk-aaaa", "changed"),
            ("r2", "rotate", "mk-bbbb", "changed"),
            ("r3", "rollback", "mk-aaaa", "changed"),
        ],
    )
    expected = from_journal(journal.runs())
    assert expected is not None and expected.identity == "mk-aaaa" and expected.run_id == "r3"
    assert expected.since is not None
    assert expected.since.isoformat() == journal.run("r3").ended_at  # type: ignore[union-attr]


def test_without_a_journal_the_majority_and_never_an_autogenerate_key() -> None:
    key = machine_key(hexkey(64), hexkey(32))
    nodes = farm_of({"a": key, "b": key, "c": machine_key(hexkey(64), hexkey(32))})
    expected = expected_key([], nodes)
    assert expected.source == "majority" and expected.identity == nodes[0].scopes[0].state.identity
    auto = farm_of({"a": "", "b": ""})
    assert expected_key([], auto).source == "none"  # two AutoGenerate nodes share no key
    assert config()  # the helper's empty config parses as AutoGenerate (checked in test_rules)
