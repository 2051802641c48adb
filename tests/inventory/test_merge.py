"""Variable precedence is Ansible's: all < parent < child (depth, then priority, then name) < host.

The cases mirror Ansible's documentation ("How variables are merged", ansible_group_priority);
each expects the value `testvar` (an unknown variable, kept as Ansible keeps it) and the typed
`farmsync_timeout` end up with on one host.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from .conftest import Loader


@dataclass(frozen=True)
class MergeCase:
    id: str
    yaml: str
    host: str
    testvar: str


LINUX = "farmsync_root_configs: [/etc/mono/4.5/web.config]"

CASES = [
    MergeCase(
        "host-over-groups",
        """
        all:
          vars: {testvar: all}
          children:
            web:
              vars: {testvar: web}
              hosts:
                web01: {testvar: host}
        """,
        "web01",
        "host",
    ),
    MergeCase(
        "group-over-all",
        """
        all:
          vars: {testvar: all}
          children:
            web:
              vars: {testvar: web}
              hosts:
                web01:
        """,
        "web01",
        "web",
    ),
    MergeCase(
        "child-over-parent-even-when-host-listed-in-parent",
        """
        all:
          children:
            farm:
              vars: {testvar: parent}
              hosts:
                web01:
              children:
                east:
                  vars: {testvar: child}
                  hosts:
                    web01:
        """,
        "web01",
        "child",
    ),
    MergeCase(
        # Ansible docs: "a_group will be merged with b_group and b_group vars that match will
        # overwrite the ones in a_group".
        "siblings-alphabetical",
        """
        all:
          children:
            b_group:
              vars: {testvar: b}
              hosts:
                web01:
            a_group:
              vars: {testvar: a}
              hosts:
                web01:
        """,
        "web01",
        "b",
    ),
    MergeCase(
        # Ansible docs: with ansible_group_priority 10 on a_group, "the result will be
        # testvar == a".
        "group-priority-beats-name",
        """
        a_group:
          vars:
            testvar: a
            ansible_group_priority: 10
          hosts:
            web01:
        b_group:
          vars:
            testvar: b
          hosts:
            web01:
        """,
        "web01",
        "a",
    ),
    MergeCase(
        "depth-beats-priority",
        """
        all:
          children:
            zeta:
              vars: {testvar: zeta, ansible_group_priority: 99}
              hosts:
                web01:
            alpha:
              children:
                alpha_child:
                  vars: {testvar: alpha_child}
                  hosts:
                    web01:
        """,
        "web01",
        "alpha_child",
    ),
    MergeCase(
        # c is reached by a -> b -> c and by d -> c: its depth is the longest path (3), so it
        # beats x (depth 2) although 'x' sorts after 'c'.
        "depth-is-longest-path",
        """
        all:
          children:
            a:
              children:
                b:
                  children:
                    c:
                      vars: {testvar: c}
                      hosts:
                        web01:
            d:
              children:
                c:
                x:
                  vars: {testvar: x}
                  hosts:
                    web01:
        """,
        "web01",
        "c",
    ),
    MergeCase(
        "depth-is-longest-path-shorter-path-first",
        """
        all:
          children:
            d:
              children:
                c:
                x:
                  vars: {testvar: x}
                  hosts:
                    web01:
            a:
              children:
                b:
                  children:
                    c:
                      vars: {testvar: c}
                      hosts:
                        web01:
        """,
        "web01",
        "c",
    ),
    MergeCase(
        "later-host-declaration-wins",
        """
        all:
          children:
            east:
              hosts:
                web01: {testvar: first}
            west:
              hosts:
                web01: {testvar: second}
        """,
        "web01",
        "second",
    ),
    MergeCase(
        "top-level-groups-without-all",
        """
        web:
          vars: {testvar: web}
          hosts:
            web01:
        """,
        "web01",
        "web",
    ),
    MergeCase(
        "yaml-merge-key-override-is-not-a-duplicate",
        """
        all:
          vars:
            base: &base {testvar: base, other: 1}
          hosts:
            web01:
              <<: *base
              testvar: override
        """,
        "web01",
        "override",
    ),
]


# Makes the host a Windows (ssh + powershell) node so it is valid; sets no testvar.
VALID_NODE = """
zz_valid_node:
  vars: {ansible_shell_type: powershell}
  hosts: {HOST: }
"""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_merge_precedence(case: MergeCase, load: Loader) -> None:
    text = textwrap.dedent(case.yaml) + VALID_NODE.replace("HOST", case.host)
    inventory = load(text)
    assert inventory.hosts[case.host].variables["testvar"] == case.testvar


def test_typed_variable_follows_same_precedence(load: Loader) -> None:
    inventory = load(
        f"""
        all:
          vars:
            {LINUX}
            farmsync_timeout: 10
          children:
            farm:
              vars: {{farmsync_timeout: 20}}
              children:
                east:
                  vars: {{farmsync_timeout: 30}}
                  hosts:
                    web01:
                    web02: {{farmsync_timeout: 40}}
                    web03: {{ansible_port: 2203}}
                west:
                  hosts:
                    web04:
        """
    )
    timeouts = {name: host.timeout for name, host in inventory.hosts.items()}
    assert timeouts == {"web01": 30.0, "web02": 40.0, "web03": 30.0, "web04": 20.0}


def test_groups_of_a_host_and_members_of_a_group(load: Loader) -> None:
    inventory = load(
        f"""
        all:
          vars: {{{LINUX}}}
          hosts:
            lonely:
          children:
            farm:
              children:
                east:
                  hosts:
                    web01:
                    web02:
                west:
                  hosts:
                    web03:
                    web01:
        """
    )
    assert list(inventory.hosts) == ["lonely", "web01", "web02", "web03"]
    assert inventory.hosts["web01"].groups == ("east", "farm", "west")
    assert inventory.hosts["lonely"].groups == ("ungrouped",)
    assert inventory.groups["farm"] == ("web01", "web02", "web03")
    assert inventory.groups["west"] == ("web01", "web03")
    assert inventory.groups["ungrouped"] == ("lonely",)
    assert inventory.groups["all"] == ("lonely", "web01", "web02", "web03")
    # A host in two groups is one host, declared where it first appeared.
    assert inventory.hosts["web01"].source_line == 10
