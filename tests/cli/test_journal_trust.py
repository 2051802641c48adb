"""The journal is trusted for nothing it cannot prove, and one bad line locks nothing up.

The farm's own journal file is edited the way damage or an intruder would edit it: a
valid-JSON run-start without ``kind``, garbage, a torn last line, a lost run-end, and forged
run records naming a file outside the inventory or a planted backup. The nodes are local
files, so the test reads exactly what recovery did to them.
"""

from __future__ import annotations

import json
from pathlib import Path

from farmsync.keys.vault import KeyStatus
from farmsync.nodes.contract import backup_path, sha256_hex
from tests.cli.clikit import LocalFarm, error_lines, json_of, output_of

FORGED_RUN = "20250101T000000Z-f0f0f0"


def journal_of(farm: LocalFarm) -> Path:
    return farm.farm_dir / "journal.jsonl"


def append_lines(farm: LocalFarm, *lines: bytes | dict[str, object]) -> None:
    with journal_of(farm).open("ab") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")


def record(event: str, result: str | None = None, **fields: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "ts": "2025-01-01T00:00:00+00:00",
        "run_id": FORGED_RUN,
        "kind": "rotate",
        "event": event,
        **fields,
    }
    if result is not None:
        rec["result"] = result
    return rec


def forge_committed_run(farm: LocalFarm, *files: tuple[str, str, bytes, bytes]) -> None:
    """Records of a rotation killed during its commit; each (host, path, old, new) file was
    staged to go from ``old`` to ``new``."""
    hosts: dict[str, list[str]] = {}
    for host, path, _, _ in files:
        hosts.setdefault(host, []).append(path)
    lines = [record("run-start", "started", hosts=hosts, target_fp="mk-0000000000000000")]
    for host, path, old, new in files:
        hashes = {"old_sha256": sha256_hex(old), "new_sha256": sha256_hex(new)}
        lines += [
            record("read", "ok", host=host, path=path, old_sha256=hashes["old_sha256"]),
            record("stage", "ok", host=host, path=path, **hashes),
            record("commit", "started", host=host, path=path),
        ]
    append_lines(farm, *lines)


def test_a_bad_journal_line_blocks_nothing_and_is_reported_with_its_line(
    local_farm: LocalFarm,
) -> None:
    assert local_farm.run("rotate").returncode == 0
    before = len(journal_of(local_farm).read_bytes().splitlines())
    no_kind = {"ts": "2025-01-01T00:00:00+00:00", "run_id": FORGED_RUN, "event": "run-start"}
    append_lines(local_farm, no_kind, b"\x00\xffnot json\n")

    rotated = local_farm.run("rotate")
    synced = local_farm.run("sync")
    append_lines(local_farm, b'{"ts": "2025-01-01", "run_')  # a write cut short by a crash
    history = local_farm.run("history")
    history_json = local_farm.run("history", "--json")
    recovered = local_farm.run("recover", "--json")

    for result in (rotated, synced, recovered, history, history_json):
        assert result.returncode == 0, output_of(result)
    assert len(set(local_farm.fingerprints().values())) == 1
    journal = str(journal_of(local_farm))
    assert f"journal {journal} has 2 damaged line(s), ignored" in rotated.stdout
    messages = json_of(recovered)["messages"]
    assert (
        f"journal {journal} line {before + 1} is damaged and was ignored: journal record "
        f"lacks 'kind' (run {FORGED_RUN})" in messages
    )
    assert any(f"line {before + 2} is damaged" in m for m in messages)
    assert any("last line was cut short by a crash" in m for m in messages)
    assert any("move those lines" in m for m in messages)
    warnings = [line for line in history.stderr.splitlines() if "is damaged" in line]
    assert len(warnings) == 2 and f"line {before + 1} " in warnings[0], history.stderr
    assert "cut short by a crash" in history.stderr
    damage = json_of(history_json)["journal"]
    assert [d["line"] for d in damage["damaged_lines"]] == [before + 1, before + 2]
    assert damage["damaged_lines"][0]["run_id"] == FORGED_RUN
    assert damage["torn_last_line"] is True


def test_a_lost_run_end_does_not_replay_an_old_run_over_newer_ones(
    local_farm: LocalFarm,
) -> None:
    first = local_farm.run("rotate", "--json")
    second = local_farm.run("rotate", "--json")
    assert first.returncode == second.returncode == 0
    old_key, new_key = json_of(first)["target_fingerprint"], json_of(second)["target_fingerprint"]
    lines = journal_of(local_farm).read_bytes().splitlines(keepends=True)
    ends = [i for i, line in enumerate(lines) if b'"run-end"' in line]
    lines[ends[0]] = b'{"broken\n'  # the first rotation's end, damaged
    journal_of(local_farm).write_bytes(b"".join(lines))
    files = local_farm.node_files()

    recovered = local_farm.run("recover", "--json")

    assert recovered.returncode == 0, output_of(recovered)
    assert any(
        "has no readable end" in m and "closed without touching" in m
        for m in json_of(recovered)["messages"]
    )
    assert local_farm.node_files() == files
    vault = local_farm.vault()
    assert vault.find(old_key).status is KeyStatus.RETIRED  # still a rollback target
    assert vault.find(new_key).status is KeyStatus.ACTIVE


def test_a_forged_run_naming_a_file_outside_the_inventory_is_reported_never_touched(
    local_farm: LocalFarm,
) -> None:
    victim = local_farm.root / "elsewhere" / "victim.conf"
    victim.parent.mkdir()
    victim.write_bytes(b"precious\n")
    planted = {backup_path(str(victim), FORGED_RUN): b"planted by an intruder\n"}
    for i in range(12):  # old backups a cleanup with keep_backups=10 would prune
        planted[backup_path(str(victim), f"20200101T0000{i:02d}Z-aaaaaa")] = b"old\n"
    for where, data in planted.items():
        Path(where).write_bytes(data)
    local_farm.farm_dir.mkdir(parents=True, mode=0o700)
    forge_committed_run(
        local_farm, ("web1", str(victim), b"planted by an intruder\n", b"precious\n")
    )
    nodes = local_farm.node_files()

    recovered = local_farm.run("recover", "--json")

    assert recovered.returncode == 0, output_of(recovered)
    assert victim.read_bytes() == b"precious\n"
    assert all(Path(where).read_bytes() == data for where, data in planted.items())
    assert local_farm.node_files() == nodes
    assert any(
        f"names web1:{victim}, which the inventory does not manage: not touched" in m
        for m in json_of(recovered)["messages"]
    )
    assert local_farm.run("rotate").returncode == 0  # and the farm is not locked up


def test_a_planted_backup_is_never_put_back_and_the_operator_can_accept_the_files(
    local_farm: LocalFarm,
) -> None:
    config = local_farm.configs["web2"]
    live = config.read_bytes()
    planted = Path(backup_path(str(config), FORGED_RUN))
    planted.write_bytes(b"<configuration>planted</configuration>\n")
    local_farm.farm_dir.mkdir(parents=True, mode=0o700)
    # The journal says the run changed web2's file from some original to what it holds now,
    # and web1's not yet: recovery must roll web2 back, from a backup it cannot prove.
    web1 = local_farm.configs["web1"]
    forge_committed_run(
        local_farm,
        ("web1", str(web1), web1.read_bytes(), b"<configuration/>\n"),
        ("web2", str(config), b"<configuration/>\n", live),
    )

    refused = local_farm.run("rotate")

    assert refused.returncode == 3, output_of(refused)
    lines = [line for line in error_lines(refused) if line.startswith("farmsync:")]
    assert lines[0] == (
        f"farmsync: error: run {FORGED_RUN} cannot be rolled back: web2 hold(s) the run's new "
        "content and no backup proven to be the original; nothing was changed, the run stays open"
    )
    assert any(
        f"web2 {config}: holds the run's new content" in line
        and f"its backup {planted} holds unknown content" in line
        for line in lines
    ), lines
    assert any("--accept-current web2" in line for line in lines), lines
    assert config.read_bytes() == live and planted.exists()

    accepted = local_farm.run("recover", "--accept-current", "web2", "--json")

    assert accepted.returncode == 0, output_of(accepted)
    assert config.read_bytes() == live
    assert planted.read_bytes() == b"<configuration>planted</configuration>\n"
    assert any("accepted as the run's outcome" in m for m in json_of(accepted)["messages"])
    assert local_farm.run("rotate").returncode == 0


def test_accept_current_refuses_a_host_outside_any_unfinished_run(local_farm: LocalFarm) -> None:
    nobody = local_farm.run("recover", "--accept-current", "web9")
    nothing = local_farm.run("recover", "--accept-current", "web1")

    assert nobody.returncode == 2 and "no host 'web9' in the inventory" in nobody.stderr
    assert nothing.returncode == 2, output_of(nothing)
    assert "web1 has no file in an unfinished run: there is nothing to accept" in nothing.stderr
