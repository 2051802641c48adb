"""--limit host patterns, Ansible syntax: names, groups, wildcards, regex, :, &, !, subscripts."""

from __future__ import annotations

import pytest

from farmsync.errors import ExitCode, InputError
from farmsync.inventory.model import Inventory
from farmsync.inventory.patterns import select_hosts, split_pattern

from .conftest import Loader

FARM = """
all:
  vars: {ansible_shell_type: powershell}
  children:
    farm:
      children:
        web_east:
          hosts:
            web01:
            web02:
        web_west:
          hosts:
            web03:
            web04:
    db:
      hosts:
        db01:
        web02:
  hosts:
    "fd00::7":
"""


@pytest.fixture
def farm(load: Loader) -> Inventory:
    return load(FARM)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, "web01 web02 web03 web04 db01 fd00::7"),
        ("all", "web01 web02 web03 web04 db01 fd00::7"),
        ("*", "web01 web02 web03 web04 db01 fd00::7"),
        ("web03", "web03"),
        ("fd00::7", "fd00::7"),
        ("web_east", "web01 web02"),
        ("farm", "web01 web02 web03 web04"),
        ("ungrouped", "fd00::7"),
        ("web0*", "web01 web02 web03 web04"),
        ("web_*", "web01 web02 web03 web04"),
        ("web0?", "web01 web02 web03 web04"),
        (r"~web0[13]", "web01 web03"),
        (r"~(db|web)0\d", "web01 web02 web03 web04 db01"),
        # unions
        ("web_east:db", "web01 web02 db01"),
        ("web_east,db", "web01 web02 db01"),
        ("web04, web01", "web01 web04"),  # inventory order, whatever the pattern's order
        # intersection
        ("farm:&db", "web02"),
        ("&db", "web02 db01"),
        # exclusion
        ("farm:!web_east", "web03 web04"),
        ("!web02", "web01 web03 web04 db01 fd00::7"),
        # unions first, then intersections, then exclusions, whatever the written order
        ("!web03:web_west", "web04"),
        ("!web01,&web_east,farm", "web02"),
        ("web_east:db:&farm:!web01", "web02"),
        # subscripts (inclusive ranges, like Ansible)
        ("farm[0]", "web01"),
        ("farm[-1]", "web04"),
        ("farm[1:2]", "web02 web03"),
        ("farm[2:]", "web03 web04"),
    ],
)
def test_select(pattern: str | None, expected: str, farm: Inventory) -> None:
    assert [h.name for h in select_hosts(farm, pattern)] == expected.split()


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("web05", "'web05' matches no host or group"),
        ("web_east:!web_nowhere", "'web_nowhere' matches no host"),  # a typo never widens a run
        ("web_east:&db01", "selects no host"),
        ("web_east:!web_east", "selects no host"),
        ("farm[9]", "'farm[9]' matches no host"),
        ("~web[", "unbalanced brackets"),
        ("~web[,db", "invalid pattern"),
        ("web[0", "unbalanced brackets"),
        ("", "empty host pattern"),
        (" , ", "empty host pattern"),
        ("web01:!", "incomplete term"),
    ],
)
def test_bad_patterns(pattern: str, fragment: str, farm: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(farm, pattern)
    assert fragment in caught.value.message
    assert caught.value.source == "--limit"
    assert caught.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        ("a:b:&c:!d", ["a", "b", "&c", "!d"]),
        ("a, b ,&c", ["a", "b", "&c"]),
        ("web[0:2]:db", ["web[0:2]", "db"]),
        ("~web\\d+,db", ["~web\\d+", "db"]),
        ("fe80::1", ["fe80::1"]),
    ],
)
def test_split(pattern: str, terms: list[str]) -> None:
    assert split_pattern(pattern) == terms
