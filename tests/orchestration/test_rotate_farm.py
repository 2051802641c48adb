"""Rotation, sync and rollback on a mixed farm of real nodes (sshd and WinRM), in process."""

from __future__ import annotations

from collections.abc import Callable

from farmsync.inventory.model import Host
from farmsync.keys.vault import KeyStatus, KeyVault, VaultSecret
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.farm import Farm
from farmsync.orchestration.journal import Journal
from farmsync.orchestration.marker import read_marker, without_marker
from farmsync.orchestration.options import RolloutOptions
from farmsync.orchestration.result import Outcome
from tests.orchestration.farmkit import PASSPHRASE, TestFarm
from tests.orchestration.stalling_controller import kill, run_until_stalled


def vault_of(farm: TestFarm) -> KeyVault:
    ctx = farm.context()
    return KeyVault.open(ctx.state.vault, VaultSecret.from_passphrase(PASSPHRASE))


def test_rotation_puts_one_key_on_every_node_of_both_transports(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=3, ssh_windows=1, winrm=2)
    assert len(set(farm.fingerprints().values())) == 6  # every node on its own key

    result = Farm(farm.context()).rotate()

    assert result.outcome is Outcome.CHANGED, result.to_dict()
    assert result.exit_code == 0
    fingerprints = set(farm.fingerprints().values())
    assert fingerprints == {result.target_fingerprint}
    vault = vault_of(farm)
    current = vault.current()
    assert current is not None and current.fingerprint == result.target_fingerprint
    assert current.key.fingerprint() == result.target_fingerprint
    for host in farm.hosts:
        backups = farm.backups(host)
        assert len(backups) == 1, host
        assert backups[0].read_bytes() == farm.originals[host], host
        # Only the machineKey line changed (and the farm marker was added, one CRLF line
        # before <configuration>); CRLF and the comment are intact.
        new = farm.configs[host].read_bytes()
        marker = read_marker(new, host)
        assert marker is not None and marker.fingerprint == result.target_fingerprint
        assert marker.run_id == result.run_id and marker.generation == 1
        assert new.count(b"\r\n") == farm.originals[host].count(b"\r\n") + 1
        assert b"<!-- root web.config of" in new
    assert not farm.leftovers()
    assert result.commit_window_ms is not None and result.commit_window_ms >= 0
    assert {h.status for h in result.hosts} == {"changed"}


def test_second_rotation_then_rollback_returns_to_the_previous_key(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    first = Farm(farm.context()).rotate()
    second = Farm(farm.context()).rotate()
    assert first.outcome is second.outcome is Outcome.CHANGED
    assert first.target_fingerprint != second.target_fingerprint
    assert set(farm.fingerprints().values()) == {second.target_fingerprint}

    back = Farm(farm.context()).rollback()

    assert back.outcome is Outcome.CHANGED
    assert set(farm.fingerprints().values()) == {first.target_fingerprint}
    vault = vault_of(farm)
    current = vault.current()
    assert current is not None and current.fingerprint == first.target_fingerprint
    second_entry = vault.find(str(second.target_fingerprint))
    assert second_entry is not None and second_entry.status is KeyStatus.RETIRED


def test_rerun_with_the_same_key_changes_nothing(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    Farm(farm.context()).rotate()
    after_rotate = {h: p.read_bytes() for h, p in farm.configs.items()}

    result = Farm(farm.context()).sync()

    assert result.outcome is Outcome.UNCHANGED
    assert {h: p.read_bytes() for h, p in farm.configs.items()} == after_rotate
    assert all(len(farm.backups(h)) == 1 for h in farm.hosts)


def test_check_reads_and_plans_but_writes_nothing(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)

    result = Farm(farm.context(RolloutOptions(check=True, diff=True))).rotate()

    assert result.outcome is Outcome.CHECKED and result.exit_code == 0
    assert farm.files_unchanged()
    assert not farm.leftovers() and not any(farm.backups(h) for h in farm.hosts)
    assert {h.status for h in result.hosts} == {"would-change"}
    diffs = [f.diff for h in result.hosts for f in h.files]
    assert all(d and "machineKey" in d for d in diffs)
    # Not one byte of the old or the would-be keys in the diff.
    for host, original in farm.originals.items():
        old_key = original.split(b'validationKey="')[1][:128].decode()
        assert all(old_key not in (d or "") for d in diffs), host
    # --check creates no vault (on a farm that has none yet).
    assert not farm.context().state.vault.exists()


def test_limit_changes_only_the_selected_hosts(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)

    result = Farm(farm.context(limit="ssh_linux:!web2")).rotate()

    assert result.outcome is Outcome.CHANGED
    assert [h.host for h in result.hosts] == ["web1"]
    assert farm.fingerprints()["web1"] == result.target_fingerprint
    for host in ("web2", "iis1"):
        assert farm.configs[host].read_bytes() == farm.originals[host]


def test_sync_brings_a_joining_node_onto_the_vault_key(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=3, ssh_windows=0, winrm=0)
    rotated = Farm(farm.context(limit="web1,web2")).rotate()
    assert rotated.outcome is Outcome.CHANGED
    before = {h: p.read_bytes() for h, p in farm.configs.items()}

    result = Farm(farm.context()).sync()

    assert result.outcome is Outcome.CHANGED
    assert set(farm.fingerprints().values()) == {rotated.target_fingerprint}
    statuses = {h.host: h.status for h in result.hosts}
    assert statuses == {"web1": "unchanged", "web2": "unchanged", "web3": "changed"}
    assert farm.configs["web1"].read_bytes() == before["web1"]


def test_rollback_after_the_first_rotation_returns_to_the_key_the_farm_had(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    shared = farm.originals["web1"]
    for path in farm.configs.values():  # a farm already on one hand-made key
        path.write_bytes(shared)
    original = farm.fingerprints()["web1"]

    rotated = Farm(farm.context()).rotate()
    back = Farm(farm.context()).rollback()

    assert rotated.outcome is back.outcome is Outcome.CHANGED
    assert set(farm.fingerprints().values()) == {original}
    # The original bytes, plus the farm marker of the rollback (generation 2).
    assert all(without_marker(p.read_bytes()) == shared for p in farm.configs.values())
    markers = [read_marker(p.read_bytes(), str(p)) for p in farm.configs.values()]
    assert {m.generation for m in markers if m is not None} == {2} and None not in markers
    entry = vault_of(farm).find(original)
    assert entry is not None and entry.origin.value == "imported"


def test_check_creates_no_vault(make_farm: Callable[..., TestFarm]) -> None:
    farm = make_farm(ssh=1, ssh_windows=0, winrm=1)
    state = farm.context().state

    result = Farm(farm.context(RolloutOptions(check=True))).rotate()

    assert result.outcome is Outcome.CHECKED
    assert not state.vault.exists()
    assert farm.files_unchanged()


def test_check_reports_an_earlier_unfinished_run_and_settles_nothing(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=0)
    kill(run_until_stalled(farm, "web2", "before"))  # web1 on the dead run's key, web2 not
    journal = Journal(farm.context().state.journal)
    (earlier,) = journal.unfinished_runs()
    mixed = {h: p.read_bytes() for h, p in farm.configs.items()}
    assert mixed["web1"] != farm.originals["web1"] and mixed["web2"] == farm.originals["web2"]

    result = Farm(farm.context(RolloutOptions(check=True))).rotate()

    assert result.outcome is Outcome.CHECKED
    assert f"unfinished run {earlier.run_id} would be settled first (not in --check)" in (
        result.messages
    )
    assert [r.run_id for r in journal.unfinished_runs()] == [earlier.run_id]
    assert {h: p.read_bytes() for h, p in farm.configs.items()} == mixed
    assert farm.backups("web1")  # the dead run's backup is still there for recover


def test_a_limited_rotation_says_which_hosts_it_left_out(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)

    result = Farm(farm.context(limit="iis")).rotate()

    assert result.outcome is Outcome.CHANGED
    assert result.left_out == sorted(set(farm.hosts) - {h.host for h in result.hosts})
    assert len(result.left_out) == 2


def test_a_rotation_costs_one_connection_and_one_round_trip_per_phase_per_node(
    make_farm: Callable[..., TestFarm],
) -> None:
    farm = make_farm(ssh=1, ssh_windows=1, winrm=1)
    opened: list[NodeOperations] = []

    def factory(host: Host) -> NodeOperations:
        node = node_for(host)
        opened.append(node)
        return node

    result = Farm(farm.context(factory=factory)).rotate()

    assert result.outcome is Outcome.CHANGED
    assert sorted(n.host_name for n in opened) == sorted(farm.hosts)  # one connection each
    # POSIX: read, stage, arm/commit, verify, cleanup. The Windows agent: read, then one
    # stage_commit whose release also answers the verify hashes and cleans up.
    assert {n.host_name: n.round_trips for n in opened} == {"web1": 5, "win2": 2, "iis1": 2}
