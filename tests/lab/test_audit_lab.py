"""``farmsync audit`` on the real lab (sshd + Mono ASP.NET per node): what the audit says
about the farm is checked against what the nodes do with tickets and ViewState, and each
finding is produced by a real change on a real node, undone afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmsync.fsutil import atomic_write_private
from farmsync.keys.generate import generate_key
from farmsync.lab.farm import lab_farm_name
from farmsync.lab.proof import cross_check
from farmsync.webconfig.editor import apply_machine_key
from tests.servers.lab_fixtures import LabFarm

LAB_NODES = 3
pytestmark = [pytest.mark.xdist_group("lab-audit"), pytest.mark.slow]


class Auditor:
    def __init__(self, lab: LabFarm, state_dir: Path):
        self.lab = lab
        self.env = {
            **os.environ,
            "FARMSYNC_STATE_DIR": str(state_dir),
            "FARMSYNC_VAULT_PASSPHRASE": secrets.token_urlsafe(16),
        }

    def farmsync(
        self, *args: str, inventory: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        path = inventory or self.lab.inventory_path
        return subprocess.run(
            [sys.executable, "-m", "farmsync.cli.main", *args, "-i", str(path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def audit(self, *args: str, inventory: Path | None = None) -> tuple[int, dict[str, Any], str]:
        done = self.farmsync("audit", "--json", *args, inventory=inventory)
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout), done.stdout + done.stderr

    def root(self, name: str) -> Path:
        return self.lab.aspnet(name).root_web_config

    def app(self, name: str) -> Path:
        return self.lab.aspnet(name).app_dir / "web.config"

    @contextlib.contextmanager
    def changed(self, path: Path, data: bytes) -> Iterator[None]:
        """``path`` holds ``data`` inside the block, its own bytes again afterwards."""
        original = path.read_bytes()
        atomic_write_private(path, data)
        try:
            yield
        finally:
            atomic_write_private(path, original)

    def with_app_configs(self, tmp: Path) -> Path:
        """The lab's inventory plus each node's application web.config to audit."""
        document = yaml.safe_load(self.lab.inventory_path.read_text())
        hosts = document["all"]["children"]["lab"]["hosts"]
        for name, variables in hosts.items():
            variables["farmsync_app_configs"] = [str(self.app(name))]
        path = tmp / "lab-with-apps.yml"
        path.write_text(yaml.safe_dump(document))
        return path


def findings(report: dict[str, Any], rule: str) -> list[tuple[str, str]]:
    return [(f["host"], f["path"]) for f in report["findings"] if f["id"] == rule]


@pytest.fixture(scope="module")
def auditor(lab_farm: LabFarm, tmp_path_factory: pytest.TempPathFactory) -> Auditor:
    auditor = Auditor(lab_farm, tmp_path_factory.mktemp("audit-state"))
    done = auditor.farmsync("rotate")
    assert done.returncode == 0, done.stderr
    return auditor


def test_a_consistent_farm_exits_0_as_the_nodes_agree(auditor: Auditor) -> None:
    code, report, _ = auditor.audit()
    assert code == 0, report["findings"]
    assert report["summary"]["distinct_keys"] == 1
    assert report["expected"]["source"] == "journal"
    assert report["keys"][0]["fingerprint"] == report["expected"]["fingerprint"]
    assert all(n["round_trips"] == 1 for n in report["nodes"])  # one read per node
    urls = {n.name: n.http_url for n in auditor.lab.lab.status().nodes}
    assert cross_check(urls).everywhere()  # the nodes agree with the audit


def test_a_node_drifted_by_hand(auditor: Auditor) -> None:
    path = auditor.root("node3")
    drifted = apply_machine_key(path.read_bytes(), generate_key(), str(path))
    with auditor.changed(path, drifted):
        code, report, _ = auditor.audit()
    assert code == 1
    assert findings(report, "key-drift") == [("node3", str(path))]
    assert report["summary"]["distinct_keys"] == 2


def test_an_application_override_through_farmsync_app_configs(
    auditor: Auditor, tmp_path: Path
) -> None:
    inventory = auditor.with_app_configs(tmp_path)
    code, report, _ = auditor.audit(inventory=inventory)
    assert code == 0 and report["summary"]["applications"] == 3
    app = auditor.app("node2")
    own = apply_machine_key(app.read_bytes(), generate_key(), str(app))
    with auditor.changed(app, own):
        code, report, _ = auditor.audit(inventory=inventory)
    assert code == 1
    assert findings(report, "application-override") == [("node2", str(app))]
    assert findings(report, "key-drift") == []  # the root configs still agree


def test_autogenerate_on_one_node(auditor: Auditor) -> None:
    path = auditor.root("node2")
    auto = re.sub(
        rb'(validationKey|decryptionKey)="[0-9A-Fa-f]+"',
        rb'\1="AutoGenerate,IsolateApps"',
        path.read_bytes(),
    )
    with auditor.changed(path, auto):
        code, report, _ = auditor.audit()
    assert code == 1
    assert findings(report, "autogenerate-in-farm") == [("node2", str(path))]
    assert "auto:node2" in {k["key"] for k in report["keys"]}
    assert not any(k["key"].startswith("auto-") for k in report["keys"])


def test_a_disclosed_key_planted_on_one_node(auditor: Auditor, tmp_path: Path) -> None:
    planted = generate_key()  # our own "disclosed" key, made now
    known = tmp_path / "known-keys.txt"
    known.write_text(f"{planted.validation_key},{planted.decryption_key}\n")
    path = auditor.root("node1")
    with auditor.changed(path, apply_machine_key(path.read_bytes(), planted, str(path))):
        code, report, output = auditor.audit("--known-keys", str(known), "--fail-on", "critical")
    assert code == 1
    assert findings(report, "disclosed-key") == [("node1", str(path))]
    assert [f["severity"] for f in report["findings"] if f["id"] == "disclosed-key"] == ["critical"]
    for value in (planted.validation_key, planted.decryption_key):
        assert value.upper() not in output.upper()


def test_mismatched_compatibility_mode(auditor: Auditor) -> None:
    path = auditor.root("node3")
    data = path.read_bytes().replace(
        b"<machineKey ", b'<machineKey compatibilityMode="Framework20SP2" ', 1
    )
    with auditor.changed(path, data):  # the file only: Mono would refuse the attribute
        code, report, _ = auditor.audit()
    assert code == 1
    mismatch = [f for f in report["findings"] if f["id"] == "attribute-mismatch"]
    assert [(f["host"], f["path"]) for f in mismatch] == [("node3", str(path))]
    assert "compatibilityMode=Framework20SP2" in mismatch[0]["message"]


def test_an_encrypted_section_is_unknown_not_clean(auditor: Auditor) -> None:
    path = auditor.root("node2")
    encrypted = re.sub(
        rb"<machineKey [^>]*/>",
        b"",
        path.read_bytes(),
    ).replace(
        b"<system.web>",
        b'<system.web configProtectionProvider="RsaProtectedConfigurationProvider">',
        1,
    )
    with auditor.changed(path, encrypted):
        code, report, _ = auditor.audit()
    assert findings(report, "encrypted-section") == [("node2", str(path))]
    node2 = next(n for n in report["nodes"] if n["host"] == "node2")
    assert [s["status"] for s in node2["scopes"]] == ["encrypted"]
    assert report["summary"]["distinct_keys"] == 1  # the unknown key is not counted as a key
    assert code == 0  # info only: but never reported as clean (status "encrypted")


def test_stale_staging_files(auditor: Auditor) -> None:
    path = auditor.root("node1")
    stale = path.with_name(path.name + ".farmsync-20260101T000000Z-dead00.new")
    stale.write_bytes(path.read_bytes())
    try:
        code, report, _ = auditor.audit()
    finally:
        stale.unlink()
    assert code == 0  # low
    assert findings(report, "stale-staging-file") == [("node1", str(path))]


def test_an_unreachable_node_exits_3(auditor: Auditor, tmp_path: Path) -> None:
    auditor.lab.lab.stop_sshd("node3")
    prom = tmp_path / "farmsync.prom"
    try:
        code, report, _ = auditor.audit("--prometheus", str(prom))
    finally:
        auditor.lab.lab.start_sshd("node3")
    assert code == 3
    assert [(n["host"], n["reachable"]) for n in report["nodes"]] == [
        ("node1", True),
        ("node2", True),
        ("node3", False),
    ]
    farm = lab_farm_name(auditor.lab.lab.state_dir)  # each lab directory its own farm
    assert f'farmsync_audit_success{{farm="{farm}"}} 0' in prom.read_text()
