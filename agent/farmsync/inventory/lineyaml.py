"""YAML that remembers where things were written, for errors that name file and line.

A SafeLoader whose mappings and sequences remember each key's and item's line, that keeps keys
exactly as written, refuses duplicate keys (naming the host or group when the duplicate is
one) and refuses Ansible Vault values. Nothing here knows what an inventory means.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from farmsync.errors import InputError

_INI_SECTION = re.compile(r"^\s*\[[^\]]+\]\s*$")
INI_HINT = "INI inventories are not read; convert one with 'ansible-inventory -i FILE --list -y'"


class LineDict(dict[Any, Any]):
    """A YAML mapping as the loader builds it: a dict that remembers each key's line."""

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}
        self.start_line: int | None = None


class LineList(list[Any]):
    """A YAML sequence that remembers each item's line."""

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []
        self.start_line: int | None = None


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


def parse_yaml(text: str, source: str) -> Any:
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
            raise InputError(f"not a YAML inventory: {INI_HINT}", source=source, line=1) from None
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = exc.problem or "unreadable"
        context = f"{exc.context}: " if exc.context else ""
        raise InputError(f"invalid YAML: {context}{problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()
