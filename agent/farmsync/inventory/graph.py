"""The Ansible group graph: groups, their hosts and children, and each host's merged variables.

Built from the line-numbered YAML the way Ansible's YAML inventory plugin reads it (``all:`` /
``children:`` / ``hosts:`` / ``vars:``, host ranges like ``web[01:04]``, ``host:port`` keys).
Variables merge the way Ansible merges them: the ``all`` group, then every other group of the
host sorted by (depth, ansible_group_priority, name), then the host's own variables, later
wins. Each variable is typed by the table in ``variables.py`` as it is read, so an error names
the line that set it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from farmsync.errors import InputError
from farmsync.inventory.lineyaml import INI_HINT, LineDict
from farmsync.inventory.model import InventoryWarning
from farmsync.inventory.variables import (
    VARIABLES,
    VariableError,
    ansible_typo_message,
    convert,
    unknown_name_message,
)

# Older Ansible spellings the ssh connection plugin still reads.
LEGACY_ALIASES = {
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_ssh_user": "ansible_user",
    "ansible_ssh_pass": "ansible_password",
}


@dataclass
class Var:
    """One variable as written (``value``, ``line``) and as typed by its table row."""

    value: Any
    line: int
    typed: Any = None


@dataclass
class Group:
    """An Ansible group: its own variables, its place in the graph, its direct hosts."""

    name: str
    line: int
    vars: dict[str, Var] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0


@dataclass
class HostDecl:
    """A host as declared: its own variables and the groups that list it."""

    name: str
    line: int
    vars: dict[str, Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


_RANGE = re.compile(r"^(.*?)\[([0-9A-Za-z]+):([0-9A-Za-z]+)(?::([0-9]+))?\](.*)$")
_HOST_PORT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):([0-9]+)$")


class GroupGraph:
    """The inventory's groups and hosts, filled by ``walk`` and completed by ``finish_groups``;
    collects the warnings and makes the errors, which name ``source`` and a line."""

    def __init__(self, source: str):
        self.source = source
        self.groups: dict[str, Group] = {}
        self.hosts: dict[str, HostDecl] = {}
        self.warnings: list[InventoryWarning] = []

    def error(self, message: str, line: int | None) -> InputError:
        return InputError(message, source=self.source, line=line)

    def warn(self, message: str, line: int | None) -> None:
        warning = InventoryWarning(self.source, line, message)
        if warning not in self.warnings:
            self.warnings.append(warning)

    # structure

    def walk(self, data: Any) -> None:
        if data is None:
            raise self.error("the inventory is empty: the farm has no hosts", 1)
        if not isinstance(data, LineDict):
            raise self.error(
                f"an inventory must be a YAML mapping of groups such as 'all:' ({INI_HINT})",
                1,
            )
        self.groups["all"] = Group("all", data.key_lines.get("all", 1))
        for name, body in data.items():
            self.walk_group(name, body, data.key_lines[name], parent=None)

    def walk_group(self, name: str, body: Any, line: int, parent: str | None) -> None:
        if not name.strip() or any(c.isspace() for c in name):
            raise self.error(f"invalid group name {name!r}", line)
        group = self.groups.setdefault(name, Group(name, line))
        if parent is not None:
            if name == "all":
                raise self.error("group 'all' cannot be the child of another group", line)
            if parent not in group.parents:
                group.parents.append(parent)
                self.groups[parent].children.append(name)
        if body is None:
            return
        if not isinstance(body, LineDict):
            raise self.error(
                f"group {name!r} must be a mapping with hosts:, children: and/or vars:, "
                f"not a {type(body).__name__}",
                line,
            )
        for key, value in body.items():
            key_line = body.key_lines[key]
            if value is not None and not isinstance(value, LineDict):
                raise self.error(
                    f"{key}: of group {name!r} must be a mapping"
                    + (" of host names (one 'name:' per line)" if key == "hosts" else ""),
                    key_line,
                )
            entries = value or LineDict()
            if key == "hosts":
                for host_key, host_vars in entries.items():
                    self.add_host(host_key, host_vars, entries.key_lines[host_key], name)
            elif key == "vars":
                for var, var_value in entries.items():
                    self.set_variable(group.vars, var, var_value, entries.key_lines[var])
            elif key == "children":
                for child, child_body in entries.items():
                    self.walk_group(child, child_body, entries.key_lines[child], parent=name)
            else:
                self.warn(
                    f"group {name!r}: unexpected key {key!r} ignored (only hosts, children, vars)",
                    key_line,
                )

    def add_host(self, key: str, host_vars: Any, line: int, group: str) -> None:
        port: int | None = None
        pattern = key
        match = _HOST_PORT.match(key)
        if match is not None and _RANGE.match(key) is None:
            pattern = match.group(1) or match.group(2)
            port = int(match.group(3))
        for name in self.expand(pattern, line):
            if not name or any(c.isspace() for c in name):
                raise self.error(f"invalid host name {name!r}", line)
            decl = self.hosts.get(name)
            if decl is None:
                decl = self.hosts[name] = HostDecl(name, line)
            if group not in decl.groups:
                decl.groups.append(group)
            if name not in self.groups[group].hosts:
                self.groups[group].hosts.append(name)
            if port is not None:
                decl.vars["ansible_port"] = self.variable("ansible_port", port, line)
            if host_vars is None:
                continue
            if not isinstance(host_vars, LineDict):
                raise self.error(
                    f"host {name!r} must be followed by a mapping of variables or nothing", line
                )
            for var, value in host_vars.items():
                self.set_variable(decl.vars, var, value, host_vars.key_lines[var])

    def expand(self, pattern: str, line: int) -> Iterator[str]:
        """Ansible host ranges: web[01:04], db[a:c], x[0:10:2]; several ranges multiply."""
        match = _RANGE.match(pattern)
        if match is None:
            yield pattern
            return
        head, start, end, step_text, tail = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise self.error(f"host range {pattern!r}: step must be at least 1", line)
        items: list[str]
        if start.isdigit() and end.isdigit():
            if start.startswith("0") and len(start) > 1 and len(start) != len(end):
                raise self.error(
                    f"host range {pattern!r}: zero-padded start and end must have the same width",
                    line,
                )
            width = len(start) if start.startswith("0") else 0
            if int(start) > int(end):
                raise self.error(f"host range {pattern!r}: start is after end", line)
            items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
        elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
            letters = string.ascii_letters
            first, last = letters.index(start), letters.index(end)
            if first > last:
                raise self.error(f"host range {pattern!r}: start is after end", line)
            items = list(letters[first : last + 1 : step])
        else:
            raise self.error(f"host range {pattern!r}: use numbers or single letters", line)
        for item in items:
            for rest in self.expand(tail, line):
                yield head + item + rest

    def set_variable(self, target: dict[str, Var], name: str, value: Any, line: int) -> None:
        """Store one variable; Ansible's older spellings count as the current name, which
        wins when both are given at the same level."""
        current = LEGACY_ALIASES.get(name)
        if current is None:
            target[name] = self.variable(name, value, line)
            return
        self.warn(f"{name} is Ansible's older name for {current}; read as {current}", line)
        if current not in target:
            target[current] = self.variable(current, value, line)

    def variable(self, name: str, value: Any, line: int) -> Var:
        var = Var(value, line)
        problem = unknown_name_message(name)
        if problem is not None:
            raise self.error(problem, line)
        typo = ansible_typo_message(name)
        if typo is not None:
            self.warn(typo, line)
        if name in VARIABLES:
            try:
                var.typed = convert(name, value)
            except VariableError as exc:
                raise self.error(f"{name}: {exc.message}", exc.line or line) from None
        return var

    # group graph

    def finish_groups(self) -> None:
        self.groups.setdefault("ungrouped", Group("ungrouped", self.groups["all"].line))
        for group in self.groups.values():
            if group.name != "all" and not group.parents:
                group.parents.append("all")
                self.groups["all"].children.append(group.name)
        for host in self.hosts.values():
            if all(g == "all" for g in host.groups):
                host.groups.append("ungrouped")
                self.groups["ungrouped"].hosts.append(host.name)
        for group in self.groups.values():
            priority = group.vars.pop("ansible_group_priority", None)
            if priority is not None:
                group.priority = int(priority.typed)
        self.set_depths()

    def set_depths(self) -> None:
        # Depth is the longest path from 'all', as Ansible computes it; a cycle is an error.
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise self.error(
                    f"group {name!r} is its own ancestor ({cycle})", self.groups[name].line
                )
            state[name] = 1
            for child in self.groups[name].children:
                visit(child, [*path, name])
            state[name] = 2
            order.append(name)

        for name in list(self.groups):
            visit(name, [])
        for name in reversed(order):  # parents before children
            group = self.groups[name]
            for child in group.children:
                self.groups[child].depth = max(self.groups[child].depth, group.depth + 1)

    def ancestors(self, host: HostDecl) -> list[Group]:
        found: dict[str, Group] = {}
        stack = list(host.groups)
        while stack:
            name = stack.pop()
            if name in found:
                continue
            found[name] = self.groups[name]
            stack.extend(found[name].parents)
        found.setdefault("all", self.groups["all"])
        return sorted(found.values(), key=lambda g: (g.depth, g.priority, g.name))

    def group_members(self, name: str) -> set[str]:
        members: set[str] = set()
        stack, seen = [name], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            members.update(self.groups[current].hosts)
            stack.extend(self.groups[current].children)
        return members

    # hosts

    def merged(self, host: HostDecl) -> dict[str, Var]:
        result: dict[str, Var] = {}
        for group in self.ancestors(host):
            result.update(group.vars)
        result.update(host.vars)
        result.pop("ansible_group_priority", None)
        return result
