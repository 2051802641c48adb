"""Helpers shared by the web.config tests: checking an edit touched only the machineKey."""

from __future__ import annotations

import re

from farmsync.webconfig.parser import decode_config, parse_config

_ELEMENT = re.compile(r"<machineKey\b[^>]*/>")
_WRAPPER = re.compile(r"</?system\.web|>")


def assert_only_machine_key_changed(old: bytes, new: bytes) -> None:
    """``new`` differs from ``old`` only in the root machineKey start tag, or by one insertion
    of a machineKey element (wrapped in a new <system.web> when there was none)."""
    before, after = decode_config(old, "old"), decode_config(new, "new")
    assert (before.encoding, before.bom, before.newline) == (
        after.encoding,
        after.bom,
        after.newline,
    )
    a, b = before.text, after.text
    old_root = parse_config(old, "old").root_key
    new_root = parse_config(new, "new").root_key
    assert new_root is not None
    if old_root is not None:
        start, end = old_root.tag.start, old_root.tag.head_end
        assert new_root.tag.start == start
        assert a[:start] == b[:start]
        assert a[end:] == b[new_root.tag.head_end :]
        return
    # Take the new element out, then what is left must be a pure insertion of whitespace
    # (and of a <system.web> wrapper when there was none).
    element = b[new_root.tag.start : new_root.tag.end]
    assert _ELEMENT.fullmatch(element)
    b = b[: new_root.tag.start] + b[new_root.tag.end :]
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(a), len(b)) - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    removed = a[prefix : len(a) - suffix]
    inserted = b[prefix : len(b) - suffix]
    # Only an insertion, except that a self-closing parent (<system.web />) gets opened.
    assert re.fullmatch(r"\s*/?>?", removed), "the edit changed text instead of inserting"
    if removed:
        assert re.search(r"<(system\.web|configuration)\s*$", a[:prefix])
    # After the element, only <system.web> wrapper pieces (and the opened parent's ">") remain.
    rest = _WRAPPER.sub("", _ELEMENT.sub("", inserted))
    assert rest.strip() == "", "inserted more than the element and its wrapper"
    if "\r\n" in a and "\n" not in a.replace("\r\n", ""):
        assert "\n" not in b.replace("\r\n", ""), "a CRLF file gained a bare LF"
