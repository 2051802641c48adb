"""Writing a machineKey into web.config bytes, changing nothing but that element.

The edit is a splice into the decoded text: the existing start tag's managed attributes
are rewritten in place (keeping their quotes, the attribute order, other attributes and
the element's content), or a new element is inserted in configuration/system.web in the
file's own indentation and newline style. The result is re-encoded with the original
encoding and BOM, parsed again and checked to carry exactly the requested key.
"""

from __future__ import annotations

from farmsync.errors import ConfigFileError
from farmsync.keys.formats import render_xml, xml_attribute_value
from farmsync.keys.machinekey import MANAGED_ATTRIBUTES, MachineKey, framework_of_path, validate_key
from farmsync.webconfig.parser import Located, ParsedConfig, Tag, parse_config

_Edit = tuple[int, int, str]  # replace text[start:end] with the string


def _apply(text: str, edits: list[_Edit]) -> str:
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _rewrite_start_tag(text: str, located: Located, key: MachineKey) -> list[_Edit]:
    tag, element = located.tag, located.element
    desired = key.attributes()
    edits: list[_Edit] = []
    present = set()
    for attr in tag.attrs:
        if attr.name not in MANAGED_ATTRIBUTES:
            continue
        present.add(attr.name)
        if attr.name not in desired:
            edits.append((attr.start, attr.value_end + 1, ""))
        elif element.get(attr.name) != desired[attr.name]:
            value = xml_attribute_value(desired[attr.name], attr.quote)
            edits.append((attr.value_start, attr.value_end, value))
    missing = [name for name in desired if name not in present]
    if missing:
        # Added attributes copy the spacing of the last attribute that stays (one per line
        # stays one per line).
        kept = [a for a in tag.attrs if a.name not in MANAGED_ATTRIBUTES or a.name in desired]
        sep = text[kept[-1].start : kept[-1].name_start] if kept else " "
        added = "".join(f'{sep}{name}="{xml_attribute_value(desired[name])}"' for name in missing)
        edits.append((tag.attrs_end, tag.attrs_end, added))
    return edits


def _indent_at(text: str, offset: int) -> str:
    """The whitespace before ``offset`` on its line ("" if not at the start of a line)."""
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    prefix = text[line_start:offset]
    return prefix if prefix.strip() == "" else ""


def _child_indent(text: str, parent: Tag, unit: str) -> str:
    content = text[parent.head_end : parent.close_start]
    stripped = content.lstrip()
    if stripped and "\n" in content[: len(content) - len(stripped)]:
        return _indent_at(text, parent.head_end + len(content) - len(stripped))
    return _indent_at(text, parent.start) + unit


def _insert_child(
    text: str, parent: Tag, lines: list[tuple[int, str]], unit: str, nl: str
) -> list[_Edit]:
    """Append ``lines`` (depth, markup) as the last child of ``parent``."""
    indent = _indent_at(text, parent.start)
    child = _child_indent(text, parent, unit)
    body = "".join(nl + child + unit * depth + line for depth, line in lines)
    if parent.self_closing:
        head = text[parent.start : parent.head_end]
        opened = head[:-2].rstrip() + ">"
        if "\n" not in text and "\r" not in text:  # a one-line file stays one line
            body, nl, indent = "".join(line for _, line in lines), "", ""
        return [(parent.start, parent.head_end, f"{opened}{body}{nl}{indent}</{parent.name}>")]
    content = text[parent.head_end : parent.close_start]
    keep = len(content.rstrip())
    at = parent.head_end + keep
    if "\n" not in content and "\r" not in content:
        # An inline parent stays inline.
        return [(at, at, "".join(line for _, line in lines))]
    if "\n" not in content[keep:] and "\r" not in content[keep:]:
        body += nl + indent
    return [(at, at, body)]


def _indent_unit(text: str, root: Tag) -> str:
    child = _child_indent(text, root, "")
    base = _indent_at(text, root.start)
    unit = child[len(base) :] if child.startswith(base) else ""
    return unit or "  "


def _edits_for(parsed: ParsedConfig, key: MachineKey) -> list[_Edit]:
    text = parsed.decoded.text
    located = parsed.root_key
    if located is not None:
        return _rewrite_start_tag(text, located, key)
    unit = _indent_unit(text, parsed.root)
    nl = parsed.decoded.newline
    element = render_xml(key)
    if parsed.system_web is not None:
        return _insert_child(text, parsed.system_web, [(0, element)], unit, nl)
    block = [(0, "<system.web>"), (1, element), (0, "</system.web>")]
    return _insert_child(text, parsed.root, block, unit, nl)


def apply_machine_key(data: bytes, key: MachineKey, source: str) -> bytes:
    """``data`` with its root machineKey set to ``key`` (replaced in place or inserted).

    Raises ConfigFileError (naming ``source`` and the line) for malformed, hostile, too
    large, encrypted or ambiguous files, and MachineKeyError when ``key`` is not valid for
    the file's framework. Applying the same key again returns identical bytes.
    """
    parsed = parse_config(data, source)
    if parsed.encrypted_line is not None:
        raise ConfigFileError(
            "system.web/machineKey is encrypted with protected configuration;"
            " refusing to overwrite it",
            source=source,
            line=parsed.encrypted_line,
        )
    validate_key(
        key,
        framework_of_path(source),
        source=source,
        line=parsed.root_key.found.line if parsed.root_key else None,
    )
    text = parsed.decoded.text
    edits = _edits_for(parsed, key)
    if not edits:
        return data
    new_text = _apply(text, edits)
    out = parsed.decoded.bom + new_text.encode(parsed.decoded.encoding, "xmlcharrefreplace")
    check = parse_config(out, source).root_key
    if check is None or check.found.key.fingerprint() != key.fingerprint():
        raise ConfigFileError(
            "the edited file does not read back the new key; not writing it", source=source
        )
    return out
