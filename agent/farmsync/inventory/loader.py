"""Load an Ansible-style YAML inventory into typed :class:`Inventory` settings.

The file is read the way Ansible's YAML inventory plugin reads it (``all:`` / ``children:`` /
``hosts:`` / ``vars:``, host ranges like ``web[01:04]``, ``host:port`` keys), and variables are
merged the way Ansible merges them: the ``all`` group, then every other group of the host sorted
by (depth, ansible_group_priority, name), then the host's own variables, later wins.

Stricter than Ansible where a silent surprise would manage the wrong machines or leak a
secret: duplicate keys, two host names for one address, unknown ``farmsync_*`` names and
wrongly typed values are errors. Every error is one :class:`InputError` naming file and line,
raised before anything is contacted.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from farmsync.algorithms import FRAMEWORK_V2, VALIDATION_ALGORITHMS
from farmsync.errors import InputError
from farmsync.inventory.model import (
    Host,
    Inventory,
    InventoryWarning,
    Policy,
    RecycleKind,
    RecycleSpec,
    Secret,
    Shell,
    SshSettings,
    Transport,
    WinrmSettings,
)
from farmsync.inventory.paths import anchor_relative_paths
from farmsync.inventory.variables import (
    VARIABLES,
    EnvPassword,
    LineDict,
    LineList,
    VariableError,
    ansible_typo_message,
    convert,
    is_secret_name,
    unknown_name_message,
)

ENV_INVENTORY = "FARMSYNC_INVENTORY"

_INI_SECTION = re.compile(r"^\s*\[[^\]]+\]\s*$")
_INI_HINT = "INI inventories are not read; convert one with 'ansible-inventory -i FILE --list -y'"
_WINRM_PASSWORD_TRANSPORTS = ("ntlm", "credssp", "basic", "plaintext", "ssl")
_GROUP_KEYS = ("hosts", "children", "vars")

# Older Ansible spellings the ssh connection plugin still reads.
LEGACY_ALIASES = {
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_ssh_user": "ansible_user",
    "ansible_ssh_pass": "ansible_password",
}


def resolve_inventory_path(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The inventory to use: the -i/--inventory value, else $FARMSYNC_INVENTORY."""
    if option:
        return option
    env = os.environ if environ is None else environ
    value = env.get(ENV_INVENTORY, "").strip()
    if not value:
        raise InputError(
            f"no inventory given: pass -i/--inventory FILE or set {ENV_INVENTORY}",
            source="--inventory",
        )
    return value


# --- YAML with line numbers ----------------------------------------------------------------


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader that records lines, keeps keys as written and refuses duplicate keys."""

    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source = source
        self.host_maps: set[int] = set()  # id() of the nodes that are a group's hosts: mapping
        self.group_maps: set[int] = set()

    def _duplicate_message(self, node: MappingNode, key: str, first: int) -> str:
        if id(node) in self.host_maps:
            what = "host"
        elif id(node) in self.group_maps:
            what = "group"
        else:
            what = "key"
        return f"duplicate {what} {key!r} (first at line {first})"

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" overrides are intended, not duplicates
            key = self._key(key_node)
            if key in seen:
                raise InputError(
                    self._duplicate_message(node, key, seen[key]),
                    source=self.source,
                    line=_line(key_node),
                )
            seen[key] = _line(key_node)
        self.flatten_mapping(node)
        result = LineDict()
        result.start_line = _line(node)
        for key_node, value_node in node.value:
            key = self._key(key_node)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = _line(key_node)
        return result

    def _key(self, node: Node) -> str:
        # Names are kept exactly as written: a host "true" or "010" stays that string.
        if not isinstance(node, ScalarNode):
            raise InputError(
                "mapping keys must be plain names", source=self.source, line=_line(node)
            )
        return str(node.value)

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> LineList:
        result = LineList()
        result.start_line = _line(node)
        for child in node.value:
            result.append(self.construct_object(child, deep=True))
            result.item_lines.append(_line(child))
        return result


def _construct_map(loader: _MarkedLoader, node: MappingNode) -> LineDict:
    return loader.construct_mapping(node)


def _construct_seq(loader: _MarkedLoader, node: SequenceNode) -> LineList:
    return loader.construct_sequence(node)


def _construct_unsafe(loader: _MarkedLoader, node: Node) -> Any:
    # Ansible's !unsafe only disables templating, which farmsync never does anyway.
    if isinstance(node, ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, MappingNode):
        return loader.construct_mapping(node)
    return None


def _construct_vault(loader: _MarkedLoader, node: Node) -> Any:
    raise InputError(
        "Ansible Vault values (!vault) are not supported: put the password in an environment "
        "variable and name it with farmsync_password_env",
        source=loader.source,
        line=_line(node),
    )


_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_MarkedLoader.add_constructor("!unsafe", _construct_unsafe)
_MarkedLoader.add_constructor("!vault", _construct_vault)


def _mark_structure(loader: _MarkedLoader, root: Node) -> None:
    """Remember which mapping nodes hold hosts and groups, for precise duplicate messages."""

    def group(node: Node) -> None:
        if not isinstance(node, MappingNode):
            return
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or not isinstance(value_node, MappingNode):
                continue
            if key_node.value == "hosts":
                loader.host_maps.add(id(value_node))
            elif key_node.value == "children" and id(value_node) not in loader.group_maps:
                loader.group_maps.add(id(value_node))
                for _, child in value_node.value:
                    group(child)

    if isinstance(root, MappingNode):
        loader.group_maps.add(id(root))
        for _, value_node in root.value:
            group(value_node)


def _parse_yaml(text: str, source: str) -> Any:
    loader = _MarkedLoader(text, source)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _mark_structure(loader, root)
        return loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
        if _INI_SECTION.match(first):
            raise InputError(f"not a YAML inventory: {_INI_HINT}", source=source, line=1) from None
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = exc.problem or "unreadable"
        context = f"{exc.context}: " if exc.context else ""
        raise InputError(f"invalid YAML: {context}{problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()


# --- inventory structure -------------------------------------------------------------------


@dataclass
class _Var:
    value: Any
    line: int
    typed: Any = None


@dataclass
class _Group:
    name: str
    line: int
    vars: dict[str, _Var] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0


@dataclass
class _HostDecl:
    name: str
    line: int
    vars: dict[str, _Var] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


_RANGE = re.compile(r"^(.*?)\[([0-9A-Za-z]+):([0-9A-Za-z]+)(?::([0-9]+))?\](.*)$")
_HOST_PORT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):([0-9]+)$")


_Typed = Callable[[str], Any]  # a variable's typed value for the host being built
_LineOf = Callable[[str], int]  # the line that set it (or the host's line)


class _Builder:
    def __init__(self, source: str, environ: Mapping[str, str]):
        self.source = source
        self.environ = environ
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _HostDecl] = {}
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
                f"an inventory must be a YAML mapping of groups such as 'all:' ({_INI_HINT})",
                1,
            )
        self.groups["all"] = _Group("all", data.key_lines.get("all", 1))
        for name, body in data.items():
            self.walk_group(name, body, data.key_lines[name], parent=None)

    def walk_group(self, name: str, body: Any, line: int, parent: str | None) -> None:
        if not name.strip() or any(c.isspace() for c in name):
            raise self.error(f"invalid group name {name!r}", line)
        group = self.groups.setdefault(name, _Group(name, line))
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
                decl = self.hosts[name] = _HostDecl(name, line)
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

    def set_variable(self, target: dict[str, _Var], name: str, value: Any, line: int) -> None:
        """Store one variable; Ansible's older spellings count as the current name, which
        wins when both are given at the same level."""
        current = LEGACY_ALIASES.get(name)
        if current is None:
            target[name] = self.variable(name, value, line)
            return
        self.warn(f"{name} is Ansible's older name for {current}; read as {current}", line)
        if current not in target:
            target[current] = self.variable(current, value, line)

    def variable(self, name: str, value: Any, line: int) -> _Var:
        var = _Var(value, line)
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
        self.groups.setdefault("ungrouped", _Group("ungrouped", self.groups["all"].line))
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

    def ancestors(self, host: _HostDecl) -> list[_Group]:
        found: dict[str, _Group] = {}
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

    def merged(self, host: _HostDecl) -> dict[str, _Var]:
        result: dict[str, _Var] = {}
        for group in self.ancestors(host):
            result.update(group.vars)
        result.update(host.vars)
        result.pop("ansible_group_priority", None)
        return result

    def build_host(self, decl: _HostDecl, default_farm: str) -> Host:
        merged = self.merged(decl)

        def typed(name: str) -> Any:
            var = merged.get(name)
            return VARIABLES[name].default if var is None else var.typed

        def line_of(name: str) -> int:
            var = merged.get(name)
            return decl.line if var is None else var.line

        name = decl.name
        transport: Transport = typed("ansible_connection")
        shell = self.shell(
            name, transport, typed("ansible_shell_type"), line_of("ansible_shell_type")
        )
        default_address = "localhost" if transport is Transport.LOCAL else name
        address: str = typed("ansible_host") or default_address
        winrm = self.winrm_settings(typed)
        port = self.port(transport, typed("ansible_port"), winrm.scheme)
        user: str | None = typed("ansible_user")
        password = self.password(name, merged)
        self.check_winrm_auth(name, decl.line, transport, winrm, user, password, line_of)
        root_configs = self.root_configs(name, decl.line, shell, typed, line_of)
        app_configs: tuple[str, ...] = typed("farmsync_app_configs")
        if shell is Shell.POSIX:
            for path in app_configs:
                if not path.startswith("/"):
                    raise self.error(
                        f"host {name!r}: farmsync_app_configs path {path!r} must be absolute",
                        line_of("farmsync_app_configs"),
                    )
        recycle: RecycleSpec = typed("farmsync_recycle")
        if recycle.kind is RecycleKind.IIS and shell is not Shell.POWERSHELL:
            raise self.error(
                f"host {name!r}: farmsync_recycle iis needs a Windows host (winrm or powershell)",
                line_of("farmsync_recycle"),
            )
        ssh = SshSettings(
            private_key_file=typed("ansible_ssh_private_key_file"),
            known_hosts_file=typed("farmsync_known_hosts"),
            jump_host=typed("farmsync_ssh_jump"),
        )
        # Raw variables stay available to upper layers, secrets wrapped so no repr shows them.
        visible = {
            key: Secret(str(var.value)) if is_secret_name(key) and var.value is not None
            else var.value
            for key, var in merged.items()
        }
        return Host(
            name=name,
            farm=typed("farmsync_farm") or default_farm,
            transport=transport,
            address=address,
            port=port,
            shell=shell,
            user=user,
            password=password,
            root_configs=root_configs,
            app_configs=app_configs,
            recycle=recycle,
            policy=typed("farmsync_policy"),
            ssh=ssh,
            winrm=winrm,
            timeout=typed("farmsync_timeout"),
            groups=tuple(sorted(g.name for g in self.ancestors(decl) if g.name != "all")),
            source_line=decl.line,
            variables=MappingProxyType(visible),
        )

    def shell(self, name: str, transport: Transport, explicit: Shell | None, line: int) -> Shell:
        if transport is Transport.WINRM:
            if explicit is Shell.POSIX:
                raise self.error(f"host {name!r}: WinRM hosts use powershell, not sh", line)
            return Shell.POWERSHELL
        return explicit or Shell.POSIX

    def winrm_settings(self, typed: _Typed) -> WinrmSettings:
        scheme: str | None = typed("ansible_winrm_scheme")
        port: int | None = typed("ansible_port")
        if scheme is None:
            scheme = "http" if port == 5985 else "https"  # Ansible's rule
        settings = WinrmSettings(
            transport=typed("ansible_winrm_transport"),
            scheme=scheme,
            cert_validation=typed("ansible_winrm_server_cert_validation"),
            ca_trust_path=typed("ansible_winrm_ca_trust_path"),
            allow_insecure_basic=typed("farmsync_winrm_allow_insecure_basic"),
            cert_pem=typed("ansible_winrm_cert_pem"),
            cert_key_pem=typed("ansible_winrm_cert_key_pem"),
            path=typed("ansible_winrm_path"),
        )
        return settings

    @staticmethod
    def port(transport: Transport, explicit: int | None, scheme: str) -> int:
        if explicit is not None:
            return explicit
        if transport is Transport.WINRM:
            return 5986 if scheme == "https" else 5985
        if transport is Transport.SSH:
            return 22
        return 0  # local: no port

    def password(self, name: str, merged: dict[str, _Var]) -> Secret | None:
        plain = merged.get("ansible_password")
        env = merged.get("farmsync_password_env")
        if plain is not None and env is not None:
            raise self.error(
                f"host {name!r} has both ansible_password (line {plain.line}) and "
                f"farmsync_password_env (line {env.line}); keep one",
                max(plain.line, env.line),
            )
        env_name: str | None = None
        line, via = 0, ""
        if env is not None:
            env_name, line, via = env.typed, env.line, "farmsync_password_env"
        elif plain is not None and isinstance(plain.typed, EnvPassword):
            env_name, line, via = plain.typed.env_name, plain.line, "ansible_password lookup"
        elif plain is not None:
            self.warn(
                "plaintext ansible_password in the inventory; set farmsync_password_env to the "
                "name of an environment variable holding it instead",
                plain.line,
            )
            secret: Secret = plain.typed
            return secret
        if env_name is None:
            return None
        value = self.environ.get(env_name)
        if value is None:
            raise self.error(
                f"host {name!r}: environment variable {env_name}, named by {via} to hold "
                "the password, is not set",
                line,
            )
        if value == "":
            raise self.error(
                f"host {name!r}: environment variable {env_name}, named by {via} to hold "
                "the password, is empty",
                line,
            )
        return Secret(value)

    def check_winrm_auth(
        self,
        name: str,
        line: int,
        transport: Transport,
        winrm: WinrmSettings,
        user: str | None,
        password: Secret | None,
        line_of: _LineOf,
    ) -> None:
        if transport is not Transport.WINRM:
            return
        auth = winrm.transport
        if auth in _WINRM_PASSWORD_TRANSPORTS and (user is None or password is None):
            missing = "ansible_user" if user is None else "a password (farmsync_password_env)"
            raise self.error(f"host {name!r}: WinRM {auth} authentication needs {missing}", line)
        if auth == "certificate" and (winrm.cert_pem is None or winrm.cert_key_pem is None):
            raise self.error(
                f"host {name!r}: WinRM certificate authentication needs ansible_winrm_cert_pem "
                "and ansible_winrm_cert_key_pem",
                line_of("ansible_winrm_transport"),
            )
        insecure = auth in ("basic", "plaintext") and winrm.scheme == "http"
        if insecure and not winrm.allow_insecure_basic:
            raise self.error(
                f"host {name!r}: Basic authentication over plain HTTP sends the password in clear; "
                "use https or set farmsync_winrm_allow_insecure_basic: true",
                line_of("ansible_winrm_transport"),
            )
        if not winrm.cert_validation and winrm.scheme == "https":
            self.warn(
                "ansible_winrm_server_cert_validation: ignore accepts any certificate; "
                "prefer ansible_winrm_ca_trust_path",
                line_of("ansible_winrm_server_cert_validation"),
            )

    def root_configs(
        self, name: str, line: int, shell: Shell, typed: _Typed, line_of: _LineOf
    ) -> tuple[str, ...]:
        explicit: tuple[str, ...] = typed("farmsync_root_configs")
        if shell is Shell.POSIX:
            if not explicit:
                raise self.error(
                    f"host {name!r} is not a Windows host (no winrm, no powershell shell): "
                    "list its root web.config files in farmsync_root_configs",
                    line,
                )
            for path in explicit:
                if not path.startswith("/"):
                    raise self.error(
                        f"host {name!r}: farmsync_root_configs path {path!r} must be absolute",
                        line_of("farmsync_root_configs"),
                    )
            return explicit
        frameworks: tuple[str, ...] = typed("farmsync_frameworks")
        policy: Policy = typed("farmsync_policy")
        if FRAMEWORK_V2 in frameworks and not VALIDATION_ALGORITHMS[policy.validation].v2_ok:
            raise self.error(
                f"host {name!r}: {FRAMEWORK_V2} does not support validation {policy.validation}; "
                "set farmsync_policy validation to SHA1 (or drop v2.0.50727)",
                line_of("farmsync_frameworks"),
            )
        if explicit:
            return explicit
        return windows_root_configs(frameworks, typed("farmsync_bitness"))


def windows_root_configs(frameworks: tuple[str, ...], bitness: tuple[int, ...]) -> tuple[str, ...]:
    """The machine-level web.config of each framework version and bitness, as Windows paths."""
    paths: list[str] = []
    for version in frameworks:
        for bits in bitness:
            folder = "Framework64" if bits == 64 else "Framework"
            paths.append(rf"%windir%\Microsoft.NET\{folder}\{version}\CONFIG\web.config")
    return tuple(paths)


def _check_farm(builder: _Builder, hosts: list[Host]) -> None:
    first = hosts[0]
    for host in hosts[1:]:
        for what, mine, theirs, var in (
            ("farm", host.farm, first.farm, "farmsync_farm"),
            ("policy", host.policy, first.policy, "farmsync_policy"),
        ):
            if mine != theirs:
                decl = builder.hosts[host.name]
                merged = builder.merged(decl)
                line = merged[var].line if var in merged else decl.line
                raise builder.error(
                    f"all hosts must share one {what} ({var}): {host.name!r} differs from "
                    f"{first.name!r}" + (f" ({mine!r} vs {theirs!r})" if what == "farm" else ""),
                    line,
                )


def _node_address(address: str) -> str:
    """One spelling per address, so "::1" and "0:0::1", or "Web01." and "web01", compare equal."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def _check_unique_nodes(builder: _Builder, hosts: list[Host]) -> None:
    seen: dict[tuple[str, int], Host] = {}
    local_paths: dict[str, Host] = {}
    for host in hosts:
        if host.transport is Transport.LOCAL:
            for path in host.root_configs:
                other = local_paths.setdefault(path, host)
                if other is not host:
                    raise builder.error(
                        f"hosts {other.name!r} and {host.name!r} are both local and both manage "
                        f"{path}; the same file would be managed twice",
                        host.source_line,
                    )
            continue
        key = (_node_address(host.address), host.port)
        other = seen.setdefault(key, host)
        if other is not host:
            raise builder.error(
                f"hosts {other.name!r} (line {other.source_line}) and {host.name!r} both reach "
                f"{host.address}:{host.port}; the same node would be managed twice",
                host.source_line,
            )


def load_inventory(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Inventory:
    """Read, merge and validate an inventory file. Raise InputError on any problem."""
    source = os.fspath(path)
    env = os.environ if environ is None else environ
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read inventory: {exc.strerror or exc}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("inventory is not UTF-8 text", source=source, line=line) from None

    builder = _Builder(source, env)
    builder.walk(_parse_yaml(text, source))
    builder.finish_groups()
    if not builder.hosts:
        raise builder.error("the inventory has no hosts: the farm is empty", 1)

    default_farm = Path(source).stem
    hosts = [builder.build_host(decl, default_farm) for decl in builder.hosts.values()]
    _check_farm(builder, hosts)
    _check_unique_nodes(builder, hosts)

    order = {host.name: i for i, host in enumerate(hosts)}
    groups = {
        name: tuple(sorted(builder.group_members(name), key=order.__getitem__))
        for name in builder.groups
    }
    groups["all"] = tuple(order)
    inventory = Inventory(
        path=source,
        farm=hosts[0].farm,
        hosts={host.name: host for host in hosts},
        groups=groups,
        warnings=tuple(builder.warnings),
    )
    return anchor_relative_paths(inventory)  # relative key/CA paths: beside the inventory
