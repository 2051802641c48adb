"""The proof on real Mono System.Web nodes: tickets and ViewState across lab nodes.

Two lab nodes start on different random keys (as a fresh farm). A forms ticket or a
ViewState issued by node1 is accepted by node1 and rejected by node2; once node2's root
web.config carries node1's key and node2 is recycled over SSH (the inventory's
farmsync_recycle), node2 accepts both, and tickets from node2 pass node1 too.

The tests share one lab and run in file order (the last one changes node2's key).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farmsync.fsutil import atomic_write_private
from farmsync.lab import probe
from farmsync.lab.aspnet import AspNetNode
from farmsync.nodes.connect import node_for
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import inspect_config
from tests.servers.lab_fixtures import LabFarm

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lab-aspnet")]
LAB_NODES = 2


def root_key_hex(node: AspNetNode) -> tuple[str, str]:
    found = inspect_config(node.root_web_config.read_bytes(), str(node.root_web_config)).root_key
    assert found is not None
    return found.key.validation_key, found.key.decryption_key


def test_each_node_reads_its_own_root_web_config_from_its_mono_cfg_dir(
    lab_farm: LabFarm,
) -> None:
    fingerprints = [node.key_fingerprint for node in lab_farm.started.nodes]
    assert all(fp and fp.startswith("mk-") for fp in fingerprints)
    assert len(set(fingerprints)) == LAB_NODES  # every node on its own explicit key
    for name in lab_farm.names:
        node = AspNetNode.load(lab_farm.lab.state_dir / name)
        assert node.root_web_config == node.mono_cfg_dir / "mono" / "4.5" / "web.config"
        assert node.root_web_config.stat().st_mode & 0o777 == 0o600
        pid = node.pid
        assert pid is not None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"MONO_CFG_DIR={node.mono_cfg_dir}".encode() in environ
        # The key reaches Mono through the file only: never a command line or environment.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for secret in root_key_hex(node):
            assert secret.encode() not in cmdline
            assert secret.encode() not in b"\0".join(environ)


def test_ticket_is_accepted_by_its_node_and_rejected_by_a_node_with_another_key(
    lab_farm: LabFarm,
) -> None:
    node1, node2 = lab_farm.urls
    cookie = probe.issue_ticket(node1, "alice")
    assert probe.check_ticket(node1, cookie) is True
    assert probe.check_ticket(node2, cookie) is False


def test_tampered_ticket_is_rejected_even_by_its_own_node(lab_farm: LabFarm) -> None:
    node1 = lab_farm.urls[0]
    name, _, value = probe.issue_ticket(node1, "alice").partition("=")
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    assert probe.check_ticket(node1, f"{name}={flipped}") is False


def test_viewstate_is_accepted_by_its_node_and_rejected_by_a_node_with_another_key(
    lab_farm: LabFarm,
) -> None:
    node1, node2 = lab_farm.urls
    form = probe.fetch_form(node1)
    assert form.viewstate
    assert probe.post_form(node1, form) is True
    assert probe.post_form(node2, form) is False


def test_tampered_viewstate_fails_mac_validation_on_its_own_node(lab_farm: LabFarm) -> None:
    node1 = lab_farm.urls[0]
    form = probe.fetch_form(node1)
    raw = form.viewstate
    tampered = raw[:8] + ("A" if raw[8] != "A" else "B") + raw[9:]
    forged = probe.FormState(form.page_url, {**form.fields, "__VIEWSTATE": tampered})
    assert probe.post_form(node1, forged) is False


def test_same_key_and_a_recycle_over_ssh_make_both_nodes_accept(lab_farm: LabFarm) -> None:
    node1, node2 = (lab_farm.aspnet(name) for name in lab_farm.names)
    cookie1 = probe.issue_ticket(node1.url, "alice")
    form1 = probe.fetch_form(node1.url)

    key1 = inspect_config(node1.root_web_config.read_bytes(), "node1").root_key
    assert key1 is not None
    path2 = node2.root_web_config
    atomic_write_private(path2, apply_machine_key(path2.read_bytes(), key1.key, str(path2)))

    # Recycle node2 exactly as farmsync does: its inventory's farmsync_recycle, over SSH.
    old_pid = node2.pid
    host = lab_farm.inventory().hosts["node2"]
    ssh_node = node_for(host)
    ssh_node.connect()
    try:
        ssh_node.recycle()
    finally:
        ssh_node.close()
    assert node2.pid is not None and node2.pid != old_pid
    assert node2.reachable()

    assert probe.check_ticket(node2.url, cookie1) is True
    assert probe.post_form(node2.url, form1) is True
    cookie2 = probe.issue_ticket(node2.url, "bob")
    assert probe.check_ticket(node1.url, cookie2) is True
    assert probe.post_form(node1.url, probe.fetch_form(node2.url)) is True
