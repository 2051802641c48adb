"""``farmsync audit`` as a user runs it, on a farm of local hosts (real files): exit codes,
every output format, and no key in any of them."""

from __future__ import annotations

import hashlib
import json
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

from lxml import html as lxml_html

from farmsync.webconfig.parser import inspect_config
from tests.cli.clikit import ANSI, CLI, LocalFarm, make_local_farm, output_of
from tests.cli.test_terminal import run_in_pty
from tests.orchestration.farmkit import node_config

TOP_LEVEL = {
    "schema",
    "kind",
    "farm",
    "generated_at",
    "exit_code",
    "fail_on",
    "summary",
    "expected",
    "keys",
    "nodes",
    "findings",
    "notes",
}


def audit(farm: LocalFarm, *args: str) -> subprocess.CompletedProcess[str]:
    return farm.run("audit", *args)


def key_values(*contents: bytes) -> set[str]:
    found: set[str] = set()
    for content in contents:
        root = inspect_config(content, "x").root_key
        if root is not None and root.key.is_explicit:
            found |= {root.key.validation_key.upper(), root.key.decryption_key.upper()}
    return found


def assert_no_key(texts: dict[str, str], keys: set[str]) -> None:
    assert keys
    for name, text in texts.items():
        for key in keys:
            assert key not in text.upper(), f"key material in {name}"
            assert key[:32] not in text.upper(), f"part of a key in {name}"


def matrix_of(page: str) -> dict[tuple[str, str], str]:
    """(host, column) -> data-key of every cell of the HTML matrix."""
    tree = lxml_html.fromstring(page)
    cells = tree.xpath('//table[@id="matrix"]//td[@data-scope][not(@class="none")]')
    return {(c.get("data-host"), c.get("data-scope")): c.get("data-key") for c in cells}


def matrix_from_json(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    found = {}
    for node in report["nodes"]:
        for scope in node["scopes"]:
            label = scope["path"] if scope["kind"] == "root" else scope["name"]
            column = label.replace(node["host"], "{host}")
            found[(node["host"], column)] = scope["key"] or ""
    return found


def test_a_consistent_farm_exits_0_and_every_format_agrees_without_a_key(
    local_farm: LocalFarm, tmp_path: Path
) -> None:
    assert local_farm.run("rotate").returncode == 0
    live = [p.read_bytes() for p in local_farm.configs.values()]
    prom, page = tmp_path / "out" / "farmsync.prom", tmp_path / "out" / "audit.html"
    prom.parent.mkdir()
    text = audit(local_farm)
    data = audit(local_farm, "--json", "--prometheus", str(prom), "--html", str(page))
    assert text.returncode == 0 and data.returncode == 0, output_of(text) + output_of(data)
    report = json.loads(data.stdout)
    assert set(report) == TOP_LEVEL and report["schema"] == 1 and report["exit_code"] == 0
    assert report["expected"]["source"] == "journal"
    assert report["summary"]["distinct_keys"] == 1 and report["summary"]["nodes"] == 3
    assert [k["fingerprint"] for k in report["keys"]] == [report["expected"]["fingerprint"]]
    assert text.stdout.splitlines()[0].startswith("audit clifarm: 3/3 nodes read")
    assert "(expected)" in text.stdout and "\x1b[" not in text.stdout  # no colour in a pipe
    metrics = prom.read_text()
    for name in (
        "farmsync_audit_nodes",
        "farmsync_audit_distinct_keys",
        "farmsync_audit_findings",
        "farmsync_key_age_seconds",
        "farmsync_audit_last_run_timestamp_seconds",
        "farmsync_audit_success",
    ):
        assert f"\n{name}{{" in "\n" + metrics
    assert 'farmsync_audit_findings{farm="clifarm",severity="critical"} 0' in metrics
    assert 'farmsync_audit_success{farm="clifarm"} 1' in metrics
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert [p.name for p in prom.parent.iterdir() if p.name.startswith(".")] == []  # no temp left
    page_text = page.read_text()
    assert "<script" not in page_text and "http" not in page_text.split("<body>")[1]
    assert matrix_of(page_text) == matrix_from_json(report)
    assert_no_key(
        {
            "text": text.stdout + text.stderr,
            "json": data.stdout,
            "prom": metrics,
            "html": page_text,
        },
        key_values(*live, *local_farm.originals.values()),
    )


def test_drift_autogenerate_and_the_html_matrix(local_farm: LocalFarm, tmp_path: Path) -> None:
    assert local_farm.run("rotate").returncode == 0
    local_farm.configs["web2"].write_bytes(node_config("web2"))  # drifted by hand
    local_farm.configs["web3"].write_bytes(b'<?xml version="1.0"?>\n<configuration />\n')
    page = tmp_path / "audit.html"
    result = audit(local_farm, "--json", "--html", str(page))
    assert result.returncode == 1, output_of(result)
    report = json.loads(result.stdout)
    ids = {(f["id"], f["host"]) for f in report["findings"]}
    assert {("key-drift", "web2"), ("key-drift", "web3"), ("autogenerate-in-farm", "web3")} <= ids
    keys = {k["key"] for k in report["keys"]}
    assert "auto:web3" in keys  # per node, never a shared auto-… fingerprint
    assert matrix_of(page.read_text()) == matrix_from_json(report)
    colours = lxml_html.fromstring(page.read_text()).xpath('//td[@data-key!=""]/@style')
    assert len(set(colours)) == 3  # three keys, three colours


def test_fail_on_moves_the_threshold(local_farm: LocalFarm) -> None:
    local_farm.configs["web2"].write_bytes(node_config("web2"))
    assert audit(local_farm).returncode == 1  # drift is high
    assert audit(local_farm, "--fail-on", "critical").returncode == 0
    assert audit(local_farm, "--fail-on", "medium").returncode == 1


def test_known_keys_in_both_formats(local_farm: LocalFarm, tmp_path: Path) -> None:
    root = inspect_config(local_farm.configs["web1"].read_bytes(), "web1").root_key
    assert root is not None
    plain = tmp_path / "keys.txt"
    plain.write_text(f"# ours, leaked in a wiki\n{root.key.validation_key},\n")
    result = audit(local_farm, "--json", "--known-keys", str(plain), "--fail-on", "critical")
    assert result.returncode == 1, output_of(result)
    critical = [f for f in json.loads(result.stdout)["findings"] if f["severity"] == "critical"]
    assert [(f["id"], f["host"]) for f in critical] == [("disclosed-key", "web1")]
    assert "the validation key is publicly disclosed" in critical[0]["message"]
    hashed = tmp_path / "keys.csv"
    digest = hashlib.sha256(root.key.decryption_key.upper().encode()).hexdigest()
    hashed.write_text(f"validationKey,decryptionKey\n{hashlib.sha256(b'').hexdigest()},{digest}\n")
    result = audit(local_farm, "--json", "--known-keys", str(hashed))
    findings = json.loads(result.stdout)["findings"]
    assert [f["host"] for f in findings if f["id"] == "disclosed-key"] == ["web1"]
    assert root.key.validation_key not in result.stdout + result.stderr


def test_bad_input_exits_2_before_any_node_is_read(local_farm: LocalFarm, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not,hex,at all\n")
    before = local_farm.node_files()
    result = audit(local_farm, "--known-keys", str(bad))
    assert result.returncode == 2, output_of(result)
    assert result.stderr.startswith(f"farmsync: error: {bad}:1:") and "[read]" not in result.stderr
    assert result.stdout == "" and local_farm.node_files() == before
    assert audit(local_farm, "--fail-on", "severe").returncode == 2


def test_an_unreachable_node_exits_3(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    farm = make_local_farm(
        tmp_path,
        host_vars={
            "web3": {
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": port,
                "farmsync_timeout": 5,
            }
        },
    )
    prom, page = tmp_path / "m.prom", tmp_path / "m.html"
    result = audit(farm, "--json", "--prometheus", str(prom), "--html", str(page))
    assert result.returncode == 3, output_of(result)
    report = json.loads(result.stdout)
    down = [n for n in report["nodes"] if not n["reachable"]]
    assert [(n["host"], n["error_kind"]) for n in down] == [("web3", "unreachable")]
    assert 'farmsync_audit_success{farm="clifarm"} 0' in prom.read_text()
    rows = lxml_html.fromstring(page.read_text()).xpath('//tr[@class="unreachable"]')
    assert [r.get("data-host") for r in rows] == ["web3"]
    assert "not read: web3" in rows[0].text_content()


def test_an_application_override_is_found_in_farmsync_app_configs(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "shop" / "web.config"
    app.parent.mkdir(parents=True)
    app.write_bytes(node_config("shop"))
    farm = make_local_farm(
        tmp_path / "farm", host_vars={"web1": {"farmsync_app_configs": [str(app)]}}
    )
    assert farm.run("rotate").returncode == 0
    result = audit(farm, "--json")
    assert result.returncode == 1, output_of(result)
    report = json.loads(result.stdout)
    override = [f for f in report["findings"] if f["id"] == "application-override"]
    assert [(f["host"], f["path"], f["application"]) for f in override] == [
        ("web1", str(app), str(app))
    ]
    assert report["summary"]["applications"] == 1


def test_colour_on_a_terminal_only(local_farm: LocalFarm) -> None:
    local_farm.configs["web2"].write_bytes(node_config("web2"))
    env = local_farm.env(TERM="xterm-256color")
    code, screen = run_in_pty([*CLI, "audit", "-i", str(local_farm.inventory)], env)
    assert code == 1, screen
    assert ANSI.search(screen), "no colour on a terminal"
    assert "key-drift" in ANSI.sub("", screen)
    no_colour = run_in_pty(
        [*CLI, "audit", "-i", str(local_farm.inventory)], {**env, "NO_COLOR": "1"}
    )
    assert "\x1b[1;31m" not in no_colour[1] and "HIGH" in no_colour[1]


def test_an_output_file_in_a_missing_folder_is_bad_input(
    local_farm: LocalFarm, tmp_path: Path
) -> None:
    result = audit(local_farm, "--prometheus", str(tmp_path / "no" / "such" / "x.prom"))
    assert result.returncode == 2, output_of(result)
    assert result.stderr.startswith("farmsync: error: --prometheus: folder ")
    assert "[connect]" not in result.stderr  # nothing was contacted
