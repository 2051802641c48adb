"""Text from an inventory or a node never reaches the terminal as control characters.

A hostile host name, a node agent's error text and a log line carry OSC (window title), CSI
(clear screen, colours), BEL, CR and a newline that forges a progress line. Everywhere
farmsync prints them they appear as visible escapes; JSON keeps them as JSON escapes.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from farmsync.cli.main import PrintableFormatter
from farmsync.cli.printable import printable
from farmsync.cli.render import render_run
from farmsync.cli.reporters import PlainReporter, RichReporter
from farmsync.lab.sshd import SshdKeys, SshdNode
from farmsync.orchestration.events import Event, Phase, Status
from farmsync.orchestration.result import FileResult, Outcome, RunResult
from tests.cli.clikit import LocalFarm, json_of, make_local_farm, output_of

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\rgone\n[commit] web9: ok\u202egnp.exe\x00\x9b31m"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\rgone\\n[commit] web9: ok\\u202egnp.exe\\x00\\x9b31m"
EVIL_HOST = "web\x1b]0;pwned\x07\x1b[31m"
# Characters no line printed by farmsync may contain. On a terminal rich draws its progress
# with ESC and CR of its own: there the hostile sequences themselves must be absent.
RAW = ("\x1b", "\x07", "\r", "\x00", "\x9b", "\u202e")
RAW_ON_TERMINAL = ("\x1b]0;pwned", "\x1b[2J", "\x07", "\rgone", "\x00", "\x9b", "\u202e")


def assert_no_controls(text: str, forbidden: tuple[str, ...] = RAW) -> None:
    for sequence in forbidden:
        assert sequence not in text, (sequence, text)


def test_printable_shows_every_control_character_as_an_escape() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("web01 /srv/www/web.config: ok") == "web01 /srv/www/web.config: ok"
    assert printable("Größe ✓ 日本") == "Größe ✓ 日本"  # printable text outside ASCII stays


def test_a_hostile_host_name_is_escaped_in_inventory_check_and_rotate(tmp_path: Path) -> None:
    farm = make_local_farm(tmp_path, groups={"east": ["web1", "web2"]})
    document = yaml.safe_load(farm.inventory.read_text())
    hosts = document["all"]["children"]["east"]["hosts"]
    hosts[EVIL_HOST] = hosts.pop("web2")
    farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    shown = "web\\x1b]0;pwned\\x07\\x1b[31m"

    checked = farm.run("inventory", "check")
    rotated = farm.run("rotate")
    as_json = farm.run("sync", "--json")
    farm.configs["web1"].write_bytes(farm.originals["web1"])  # drift, for the audit to report
    audited = farm.run("audit")

    assert audited.returncode != 0, output_of(audited)  # key-drift: a finding
    assert_no_controls(audited.stdout + audited.stderr)
    assert shown in audited.stdout, output_of(audited)
    for result in (checked, rotated):
        assert result.returncode == 0, output_of(result)
        assert_no_controls(result.stdout + result.stderr)
        assert shown in result.stdout, output_of(result)
    assert any(line.endswith(f"[commit] {shown}: ok") for line in rotated.stderr.splitlines())
    assert as_json.returncode == 0, output_of(as_json)
    assert "\x1b" not in as_json.stdout  # JSON escapes it as \u001b
    assert EVIL_HOST in {h["host"] for h in json_of(as_json)["hosts"]}


HOSTILE_AGENT = """#!/bin/sh
# A Windows-shell node whose agent answers every request with a hostile error text.
printf '%s\\n' {answer}
"""


@pytest.fixture
def hostile_node(tmp_path: Path, sshd_keys: SshdKeys) -> Iterator[SshdNode]:
    shim = tmp_path / "hostile-shim"
    shim.mkdir()
    answer = json.dumps({"ok": False, "error": {"kind": "remote-error", "detail": HOSTILE}})
    (shim / "powershell.exe").write_text(HOSTILE_AGENT.format(answer="'" + answer + "'"))
    (shim / "powershell.exe").chmod(0o755)
    node = SshdNode(tmp_path / "sshd", keys=sshd_keys, path_prefix=(shim,))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def test_a_node_error_text_is_escaped_in_progress_table_and_messages(
    local_farm: LocalFarm, hostile_node: SshdNode
) -> None:
    document = yaml.safe_load(local_farm.inventory.read_text())
    document["all"]["children"]["ssh"] = {
        "hosts": {
            "win1": {
                "ansible_connection": "ssh",
                "ansible_shell_type": "powershell",
                "ansible_host": hostile_node.host,
                "ansible_port": hostile_node.port,
                "ansible_user": hostile_node.user,
                "ansible_ssh_private_key_file": str(hostile_node.client_key_path),
                "farmsync_known_hosts": str(hostile_node.known_hosts_path),
                "farmsync_root_configs": ["C:\\inetpub\\web.config"],
            }
        }
    }
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))

    result = local_farm.run("rotate")

    assert result.returncode == 3, output_of(result)  # win1 could not be read: not started
    assert_no_controls(result.stdout + result.stderr)
    assert SHOWN in result.stderr and SHOWN in result.stdout, output_of(result)
    # The forged progress line stayed inside the real one.
    assert not any(line.startswith("[commit] web9") for line in result.stderr.splitlines())
    assert local_farm.contents() == local_farm.originals


def test_rich_progress_table_and_log_lines_escape_node_text() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=300)
    with RichReporter(console) as reporter:
        reporter.event(Event(Phase.STAGE, Status.START, total=1))
        reporter.event(Event(Phase.STAGE, Status.FAILED, EVIL_HOST, HOSTILE))
    result = RunResult("run-1", "rotate", "farm", Outcome.ROLLED_BACK)
    host = result.host(EVIL_HOST)
    host.status, host.error = "failed", HOSTILE
    host.files.append(FileResult("/srv/www/web.config", "failed", diff=f"-{HOSTILE}\n+ok"))
    result.messages.append(HOSTILE)
    render_run(result, console)
    plain = io.StringIO()
    PlainReporter(plain).event(Event(Phase.COMMIT, Status.FAILED, EVIL_HOST, HOSTILE))
    record = logging.LogRecord("farmsync", logging.WARNING, __file__, 1, "%s", (HOSTILE,), None)
    logged = PrintableFormatter(logging.Formatter("farmsync: %(message)s")).format(record)

    screen = out.getvalue()
    assert_no_controls(screen, RAW_ON_TERMINAL)
    assert screen.count("\\x1b]0;pwned\\x07") >= 4  # progress, table, diff, message
    assert plain.getvalue() == f"[commit] web\\x1b]0;pwned\\x07\\x1b[31m: failed {SHOWN}\n"
    assert logged == f"farmsync: {SHOWN}"
