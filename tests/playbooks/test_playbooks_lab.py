"""The playbooks run for real: ansible-playbook from the venv reads the lab's own
inventory/lab.yml, and the farm's tickets and ViewState show what happened.

One three-node lab (real sshd + Mono System.Web per node) is shared by every test here. Each
test starts from whatever key the farm holds and leaves it on one key. Every run's whole
output (and Ansible's log) is scanned for key material.

Commands from other issues: `farmsync audit` (issue 8) is needed by every rotate.yml,
audit-nightly.yml and emergency-rotate.yml test but the one whose rotate fails first (the
emergency tests check the audits' exit codes and fingerprints in the webhook's body).
rotate.yml runs `farmsync doctor` (issue 10) once this farmsync has it: the rotate.yml
tests then need it to find the lab ready, and the full rotation test checks the step ran (or
was skipped, before it exists). The rotate-rolling.yml tests need neither.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from farmsync.fsutil import atomic_write_private
from farmsync.keys.generate import generate_key
from farmsync.keys.vault import KeyVault, VaultSecret
from farmsync.lab.aspnet import AspNetNode
from farmsync.lab.proof import check, cross_check, issue
from farmsync.orchestration.state import StateDir
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import inspect_config
from tests.playbooks.playbook_runner import (
    FARMSYNC,
    Ansible,
    PlaybookRun,
    key_material,
    task_results,
)
from tests.playbooks.standins import LoadBalancer, Webhook, serve
from tests.servers.lab_fixtures import LabFarm

LAB_NODES = 3
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("playbooks-lab")]


@dataclass
class Farm:
    """The lab, farmsync's state for it, and Ansible set up to run the playbooks."""

    lab: LabFarm
    ansible: Ansible
    state_dir: Path
    passphrase: str

    @property
    def name(self) -> str:
        """The farm's name (the lab names each farm after its directory)."""
        return self.lab.inventory().farm

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    @property
    def env(self) -> dict[str, str]:
        return self.ansible.env

    def node(self, name: str) -> AspNetNode:
        return self.lab.aspnet(name)

    def key(self, name: str) -> str:
        path = self.node(name).root_web_config
        found = inspect_config(path.read_bytes(), str(path)).root_key
        assert found is not None
        return found.key.fingerprint()

    def keys(self) -> dict[str, str]:
        return {name: self.key(name) for name in self.lab.names}

    def urls(self) -> dict[str, str]:
        return {name: self.node(name).url for name in self.lab.names}

    def farmsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FARMSYNC), *args, "-i", str(self.inventory)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def one_key(self) -> str:
        """Bring the farm onto one key if it is not (so each test stands alone)."""
        if len(set(self.keys().values())) != 1:
            done = self.farmsync("rotate")
            assert done.returncode == 0, done.stderr
        (key,) = set(self.keys().values())
        return key

    def vault_secrets(self) -> list[str]:
        path = StateDir(self.state_dir, self.name).vault
        assert path.exists(), "no vault: the scan would have no keys to look for"
        vault = KeyVault.open(path, VaultSecret.from_passphrase(self.passphrase))
        return [k for e in vault.entries() for k in (e.key.validation_key, e.key.decryption_key)]

    def play(
        self, name: str, *options: str, inventory: Path | None = None, **extra: Any
    ) -> PlaybookRun:
        """Run a playbook against the lab's inventory (or ``inventory``); its output must
        carry no key."""
        done = self.ansible.playbook(
            name, inventory or self.inventory, {"farmsync_bin": str(FARMSYNC), **extra}, *options
        )
        leaked = key_material(
            done.output + self.ansible.log(), [*self.vault_secrets(), self.passphrase]
        )
        assert not leaked, f"{name}: key material in Ansible's output: {leaked}"
        return done


@pytest.fixture(scope="module")
def farm(lab_farm: LabFarm, tmp_path_factory: pytest.TempPathFactory) -> Farm:
    state_dir = tmp_path_factory.mktemp("farmsync-state")
    passphrase = secrets.token_urlsafe(16)
    # The vault secret and the state dir reach farmsync from ansible-playbook's environment.
    ansible = Ansible(
        tmp_path_factory.mktemp("ansible"),
        {
            "FARMSYNC_STATE_DIR": str(state_dir),
            "FARMSYNC_VAULT_PASSPHRASE": passphrase,
        },
    )
    return Farm(lab_farm, ansible, state_dir, passphrase)


def grouped(calls: list[Any]) -> list[tuple[str, set[str]]]:
    """Consecutive calls of one kind, as (action, hosts): a batch's drains, its health
    checks (retries included), its undrains."""
    groups: list[tuple[str, set[str]]] = []
    for call in calls:
        if groups and groups[-1][0] == call.action:
            groups[-1][1].add(call.host)
        else:
            groups.append((call.action, {call.host}))
    return groups


@contextlib.contextmanager
def load_balancer(
    farm: Farm, failing: set[str] | None = None
) -> Iterator[tuple[LoadBalancer, dict[str, Any]]]:
    """The stand-in load balancer, and the playbook variables that point at it. Each call
    records the node's key fingerprint and ASP.NET pid at that moment."""
    lb = LoadBalancer(
        {name: url + "Form.aspx" for name, url in farm.urls().items()},
        lambda host: (farm.key(host), farm.node(host).pid),
        failing or set(),
    )
    with serve(lb) as base:
        yield (
            lb,
            {
                "farmsync_lb_drain_url": base + "/drain/{{ inventory_hostname }}",
                "farmsync_lb_undrain_url": base + "/undrain/{{ inventory_hostname }}",
                "farmsync_lb_drain_body": {"state": "drain"},
                "farmsync_lb_undrain_body": {"state": "ready"},
                "farmsync_health_url": base + "/health/{{ inventory_hostname }}",
                "farmsync_health_retries": 2,
                "farmsync_health_delay": 1,
            },
        )


# --- rotate-rolling.yml ------------------------------------------------------------------------
def test_rolling_rotation_drains_changes_recycles_checks_and_undrains_batch_by_batch(
    farm: Farm,
) -> None:
    before = farm.keys()
    pids = {name: farm.node(name).pid for name in farm.lab.names}

    with load_balancer(farm) as (lb, lb_vars):
        done = farm.play("rotate-rolling.yml", farmsync_serial=2, **lb_vars)

    assert done.returncode == 0, done.output[-4000:]
    first, second = {"node1", "node2"}, {"node3"}
    assert grouped(lb.calls) == [
        ("drain", first),
        ("health", first),
        ("undrain", first),
        ("drain", second),
        ("health", second),
        ("undrain", second),
    ]
    (key,) = set(farm.keys().values())  # one key at the end
    assert key not in before.values()
    for call in lb.calls:
        fingerprint, pid = call.observed
        if call.action == "drain":  # still on its own key, not yet recycled
            assert (fingerprint, pid) == (before[call.host], pids[call.host]), call
        else:  # checked and undrained only on the new key, after its recycle
            assert fingerprint == key and pid != pids[call.host], call
    assert all(c.body == {"state": "drain"} for c in lb.calls if c.action == "drain")
    assert all(c.body == {"state": "ready"} for c in lb.calls if c.action == "undrain")
    # The first batch got a new key, the later one that same key.
    assert task_results(done.stdout, "Run farmsync rotate (first batch) or sync") == [
        "changed",
        "changed",
    ]
    assert '"rotate", "--limit", "node1:node2", "-i"' in done.stdout
    assert '"sync", "--limit", "node3", "-i"' in done.stdout
    assert cross_check(farm.urls()).everywhere()


def test_failed_health_check_on_the_second_batch_stops_the_play_with_that_batch_drained(
    farm: Farm,
) -> None:
    start = farm.one_key()
    earlier = issue(farm.urls())

    # Batches [node1] and [node2, node3]; node2 fails its health check, node3 passes its own.
    with load_balancer(farm, failing={"node2"}) as (lb, lb_vars):
        done = farm.play("rotate-rolling.yml", farmsync_serial=[1, 2], **lb_vars)

    assert done.returncode != 0
    second = {"node2", "node3"}
    assert grouped(lb.calls) == [
        ("drain", {"node1"}),
        ("health", {"node1"}),
        ("undrain", {"node1"}),
        ("drain", second),
        ("health", second),  # and no undrain: the whole batch stays drained
    ]
    assert [c.host for c in lb.calls if c.action == "health"].count("node2") == 3  # 2 retries
    keys = farm.keys()
    assert keys["node1"] != start  # the first batch rotated
    assert keys["node2"] == keys["node3"] == keys["node1"]  # the second synced to that key
    message = next(line for line in done.stdout.splitlines() if line.startswith("fatal: [node2]"))
    assert "node2 failed its health check" in message
    assert "node2, node3, which stays drained" in message
    assert f"`farmsync rollback -i {farm.inventory}`" in message
    assert f"`farmsync sync -i {farm.inventory} --limit node2:node3`" in message

    # Do what the message says: rollback puts the whole farm back on the key it had.
    back = farm.farmsync("rollback")
    assert back.returncode == 0, back.stderr
    assert set(farm.keys().values()) == {start}
    assert check(farm.urls(), earlier).everywhere()


def test_a_batch_farmsync_cannot_change_stops_the_play_drained_and_says_why(farm: Farm) -> None:
    start = farm.one_key()

    with load_balancer(farm) as (lb, lb_vars):
        # node2's sshd goes away once the first batch is back in the pool.
        lb.after = lambda call: (
            farm.lab.lab.stop_sshd("node2")
            if (call.action, call.host) == ("undrain", "node1")
            else None
        )
        try:
            done = farm.play("rotate-rolling.yml", **lb_vars)
        finally:
            farm.lab.lab.start_sshd("node2")

    assert done.returncode != 0
    assert grouped(lb.calls) == [
        ("drain", {"node1"}),
        ("health", {"node1"}),
        ("undrain", {"node1"}),
        ("drain", {"node2"}),  # then sync could not reach it: no health check, no undrain
    ]
    assert "farmsync sync exited 3 (could not run" in done.stdout
    assert "The play stopped at the batch node2, which stays drained" in done.stdout
    keys = farm.keys()
    assert keys["node1"] != start and keys["node2"] == keys["node3"] == start
    back = farm.farmsync("rollback")
    assert back.returncode == 0, back.stderr
    assert set(farm.keys().values()) == {start}


def test_a_drain_the_load_balancer_refuses_stops_the_play_before_any_change(farm: Farm) -> None:
    start = farm.one_key()

    with load_balancer(farm) as (lb, lb_vars):
        lb.refusing = {"node2"}
        done = farm.play("rotate-rolling.yml", **lb_vars)

    assert done.returncode != 0
    assert grouped(lb.calls) == [
        ("drain", {"node1"}),
        ("health", {"node1"}),
        ("undrain", {"node1"}),
        ("drain", {"node2"}),
    ]
    assert "The load balancer did not drain node2 (HTTP 503" in done.stdout
    assert "Nothing was changed on the batch node2" in done.stdout
    keys = farm.keys()
    assert keys["node1"] != start and keys["node2"] == keys["node3"] == start
    new_key = keys["node1"]

    # Finish the way the message says: the same playbook, every batch syncing.
    with load_balancer(farm) as (lb, lb_vars):
        resumed = farm.play("rotate-rolling.yml", farmsync_rolling_resume=True, **lb_vars)

    assert resumed.returncode == 0, resumed.output[-4000:]
    assert [action for action, _ in grouped(lb.calls)] == ["drain", "health", "undrain"] * 3
    assert '"rotate", "--limit"' not in resumed.stdout
    assert '"sync", "--limit", "node1", "-i"' in resumed.stdout
    assert set(farm.keys().values()) == {new_key}


# --- rotate.yml --------------------------------------------------------------------------------
def test_rotate_playbook_stops_on_farmsyncs_exit_code_with_its_message(farm: Farm) -> None:
    start = farm.one_key()

    # The lab's policy has no max_key_age: `rotate --if-due` is bad input (exit 2).
    done = farm.play("rotate.yml", farmsync_only_when_due=True)

    assert done.returncode != 0
    assert "farmsync rotate exited 2 (bad input, nothing was contacted or changed)" in done.stdout
    assert "--if-due needs farmsync_policy.max_key_age" in done.stdout
    assert task_results(done.stdout, "Run farmsync audit") == []  # never reached
    assert set(farm.keys().values()) == {start}


def test_rotate_playbook_only_when_due_leaves_a_young_key_alone(farm: Farm, tmp_path: Path) -> None:
    """Needs `farmsync audit` (issue 8)."""
    start = farm.one_key()
    text = farm.inventory.read_text()
    assert "          decryption: AES\n" in text
    policy = tmp_path / "lab-90d.yml"  # the same farm, with a max_key_age policy
    policy.write_text(
        text.replace(
            "          decryption: AES\n", "          decryption: AES\n          max_key_age: 90d\n"
        )
    )

    done = farm.play("rotate.yml", inventory=policy, farmsync_only_when_due=True)

    assert done.returncode == 0, done.output[-4000:]
    assert '"--if-due"' in done.stdout
    assert task_results(done.stdout, "Run farmsync rotate --if-due") == ["ok"]  # not changed
    assert '"outcome": "unchanged"' in done.stdout
    assert set(farm.keys().values()) == {start}


def test_rotate_playbook_rotates_and_tickets_and_viewstate_cross_every_node(farm: Farm) -> None:
    """Needs `farmsync audit` (issue 8); runs `farmsync doctor` (issue 10) once it exists."""
    start = farm.one_key()
    earlier = issue(farm.urls())
    has_doctor = (
        subprocess.run(
            [str(FARMSYNC), "doctor", "--help"], capture_output=True, check=False
        ).returncode
        == 0
    )

    done = farm.play("rotate.yml", "-vvv")  # Ansible's most talkative: still no key

    assert done.returncode == 0, done.output[-4000:]
    (key,) = set(farm.keys().values())
    assert key != start
    assert cross_check(farm.urls()).everywhere()
    after = check(farm.urls(), earlier)
    assert not any(
        ok for m in (after.tickets, after.viewstate) for r in m.values() for ok in r.values()
    )
    assert task_results(done.stdout, "Run farmsync doctor") == (
        ["ok"] if has_doctor else ["skipping"]
    )
    assert task_results(done.stdout, "Run farmsync rotate") == ["changed"]
    assert task_results(done.stdout, "Run farmsync audit --fail-on high") == ["ok"]
    assert f'"target_fingerprint": "{key}"' in done.stdout  # farmsync's JSON summary, shown
    assert "rotate changed" in done.stdout and f"key {key}" in done.stdout


# --- audit-nightly.yml -------------------------------------------------------------------------
def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{name}(\{{[^}}]*{re.escape(labels)}[^}}]*\}})? ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    assert found, f"no {name}{labels} in the textfile"
    return float(found.group(2))


def test_audit_nightly_writes_the_prometheus_file_and_a_dated_report(
    farm: Farm, tmp_path: Path
) -> None:
    """Needs `farmsync audit` (issue 8)."""
    farm.one_key()
    prom, reports = tmp_path / "textfile" / "farmsync.prom", tmp_path / "reports"
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")

    done = farm.play(
        "audit-nightly.yml", farmsync_prometheus_file=str(prom), farmsync_report_dir=str(reports)
    )

    assert done.returncode == 0, done.output[-4000:]
    text = prom.read_text()
    assert _metric(text, "farmsync_audit_nodes") == 3
    assert _metric(text, "farmsync_audit_distinct_keys") == 1
    assert _metric(text, "farmsync_audit_success") == 1
    for name in ("farmsync_audit_findings", "farmsync_audit_last_run_timestamp_seconds"):
        _metric(text, name)
    (report,) = reports.iterdir()
    assert re.fullmatch(rf"farmsync-audit-{farm.name}-{today}T\d{{6}}Z\.json", report.name)
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert json.loads(report.read_text())["schema"] == 1


def test_audit_nightly_fails_on_a_drifted_node_after_keeping_the_report(
    farm: Farm, tmp_path: Path
) -> None:
    """Needs `farmsync audit` (issue 8)."""
    farm.one_key()
    node3 = farm.node("node3")
    path = node3.root_web_config
    atomic_write_private(path, apply_machine_key(path.read_bytes(), generate_key(), str(path)))
    node3.restart()
    prom, reports = tmp_path / "farmsync.prom", tmp_path / "reports"

    done = farm.play(
        "audit-nightly.yml", farmsync_prometheus_file=str(prom), farmsync_report_dir=str(reports)
    )

    assert done.returncode != 0
    assert "The audit found findings at or above high" in done.stdout
    (report,) = reports.iterdir()
    assert json.loads(report.read_text())["schema"] == 1
    assert _metric(prom.read_text(), "farmsync_audit_findings", 'severity="high"') >= 1
    synced = farm.farmsync("sync")
    assert synced.returncode == 0, synced.stderr


# --- emergency-rotate.yml ----------------------------------------------------------------------
def test_emergency_rotation_posts_fingerprints_and_no_key_to_the_webhook(
    farm: Farm, tmp_path: Path
) -> None:
    """Needs `farmsync audit` (issue 8)."""
    start = farm.one_key()
    token = secrets.token_hex(8)
    hook = Webhook()
    # The token comes from a vars file (an Ansible Vault file in real use): -vvv prints the
    # command line, so a secret given with -e on it would show there.
    headers = tmp_path / "hook-vars.json"
    headers.write_text(
        json.dumps({"farmsync_webhook_headers": {"Authorization": f"Bearer {token}"}})
    )

    with serve(hook=hook) as base:
        done = farm.play(
            "emergency-rotate.yml",
            "-vvv",
            "-e",
            f"@{headers}",
            farmsync_webhook_url=base + "/hook",
            farmsync_emergency_reason="INC-4711",
        )

    assert done.returncode == 0, done.output[-4000:]
    (key,) = set(farm.keys().values())
    assert key != start
    assert cross_check(farm.urls()).everywhere()
    (body,) = hook.bodies
    assert body["event"] == "farmsync.emergency-rotate" and body["reason"] == "INC-4711"
    assert body["farm"] == farm.name
    rotation = body["rotation"]
    assert rotation["outcome"] == "changed" and rotation["exit_code"] == 0
    assert rotation["new_fingerprint"] == key
    assert rotation["old_fingerprints"] == [start]
    assert rotation["hosts"] == {name: "changed" for name in farm.lab.names}
    assert body["audit_before"]["exit_code"] == 0 and body["audit_after"]["exit_code"] == 0
    assert body["audit_before"]["fingerprints"] == [start]
    assert body["audit_after"]["fingerprints"] == [key]
    assert body["audit_after"]["summary"]["distinct_keys"] == 1
    assert key_material(hook.raw[0].decode(), farm.vault_secrets()) == []
    assert hook.authorization == [f"Bearer {token}"]
    assert token not in done.output + farm.ansible.log()  # the POST task is no_log


def test_emergency_rotation_that_cannot_start_still_tells_the_webhook(farm: Farm) -> None:
    start = farm.one_key()
    hook = Webhook()
    farm.lab.lab.stop_sshd("node2")
    try:
        with serve(hook=hook) as base:
            done = farm.play("emergency-rotate.yml", farmsync_webhook_url=base + "/hook")
    finally:
        farm.lab.lab.start_sshd("node2")

    assert done.returncode != 0
    assert "farmsync rotate exited 3 (could not run" in done.stdout
    (body,) = hook.bodies
    assert body["rotation"]["exit_code"] == 3
    assert body["rotation"]["outcome"] == "not-started"
    assert body["rotation"]["new_fingerprint"] is None  # planned, never deployed
    assert body["audit_before"]["exit_code"] == 3  # node2 could not be read either
    assert body["audit_before"]["fingerprints"] == [start]  # what the nodes it read hold
    assert set(farm.keys().values()) == {start}
