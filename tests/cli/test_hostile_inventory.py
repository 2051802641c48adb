"""Inventory values that would reach a node's file system or the controller's CPU unchecked.

A managed path with a control character (a NUL ends the name the node opens, a newline splits
the commit script's lines) or a ``..`` component is refused by every command with file and
line, before anything is contacted or stored. A ``~`` regex in ``--limit`` that backtracks
without end is refused once its CPU budget runs out.
"""

from __future__ import annotations

import pytest
import yaml

from farmsync.inventory.patterns import REGEX_MAX_CHARS
from tests.cli.clikit import LocalFarm, error_lines, output_of, snapshot

BAD_PATHS = {
    "tab": ("/srv/www/web\t.config", "control character (U+0009)"),
    "newline": ("/srv/www/web.config\n/etc/shadow", "control character (U+000A)"),
    "nul": ("/srv/www/web.config\x00.txt", "control character (U+0000)"),
    "escape": ("/srv/www/\x1b[2Jweb.config", "control character (U+001B)"),
    "dotdot": ("/srv/www/../../etc/web.config", "'..' component"),
    "windows-dotdot": ("C:\\inetpub\\..\\Windows\\web.config", "'..' component"),
}


def plant(local_farm: LocalFarm, variable: str, bad: str) -> int:
    """Put ``bad`` second in web2's ``variable`` list; returns the line it is on."""
    document = yaml.safe_load(local_farm.inventory.read_text())
    host = document["all"]["children"]["east"]["hosts"]["web2"]
    host[variable] = [str(local_farm.configs["web2"]), bad]
    text = yaml.safe_dump(document, sort_keys=False, width=1000)
    local_farm.inventory.write_text(text)
    lines = text.splitlines()
    marker = yaml.safe_dump([bad], width=1000).splitlines()[0]
    return lines.index(next(line for line in lines if line.strip() == marker)) + 1


@pytest.mark.parametrize("variable", ["farmsync_root_configs", "farmsync_app_configs"])
@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_a_managed_path_with_control_characters_or_dotdot_is_refused_everywhere(
    local_farm: LocalFarm, variable: str, case: str
) -> None:
    bad, reason = BAD_PATHS[case]
    line = plant(local_farm, variable, bad)
    before = snapshot(local_farm.root)

    for command in (("inventory", "check"), ("rotate",), ("sync",), ("recover",)):
        result = local_farm.run(*command)

        assert result.returncode == 2, output_of(result)
        (message,) = error_lines(result)
        assert message.startswith(f"farmsync: error: {local_farm.inventory}:{line}: "), message
        assert variable in message and reason in message, message
        assert "\x1b" not in result.stderr and "\x00" not in result.stderr
    assert snapshot(local_farm.root) == before  # no state dir, no vault, no node file


def test_a_regex_limit_that_backtracks_without_end_is_refused(local_farm: LocalFarm) -> None:
    # 40 characters: Python's re needs ~24 s of CPU to find that '(a|aa)+$b' does not match.
    document = yaml.safe_load(local_farm.inventory.read_text())
    hosts = document["all"]["children"]["east"]["hosts"]
    hosts["a" * 40] = hosts.pop("web2")
    local_farm.inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    before = snapshot(local_farm.root)

    result = local_farm.run("rotate", "--limit", "~(a|aa)+$b")

    assert result.returncode == 2, output_of(result)
    (message,) = error_lines(result)
    assert message.startswith("farmsync: error: --limit: regex host pattern '~(a|aa)+$b'")
    assert "CPU" in message
    assert snapshot(local_farm.root) == before

    fine = local_farm.run("rotate", "--check", "--limit", "~(web|a+)[0-9a]*$")
    assert fine.returncode == 0, output_of(fine)
    long = local_farm.run("rotate", "--check", "--limit", "~" + "w" * (REGEX_MAX_CHARS + 1))
    assert long.returncode == 2 and "the limit is 256" in long.stderr, output_of(long)
