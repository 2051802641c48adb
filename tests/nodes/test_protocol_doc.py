"""PROTOCOL.md documents the table it describes: every op, argument, error kind and constant."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from farmsync.errors import NodeErrorKind
from farmsync.nodes import protocol

DOC = resources.files("farmsync.nodes").joinpath("PROTOCOL.md").read_text("utf-8")


def section(op: str) -> str:
    match = re.search(rf"^### `{op}`\n(.*?)(?=^### |^## |\Z)", DOC, re.M | re.S)
    assert match, f"PROTOCOL.md has no section for {op}"
    return " ".join(match.group(1).split())


@pytest.mark.parametrize("op", protocol.OPS)
def test_every_op_and_argument_is_documented_with_its_type(op: str) -> None:
    text = section(op)
    for name, kind in protocol.OP_ARGS[op].items():
        if kind != protocol.ITEMS:
            assert f"{name}: {kind}" in text, f"{op}: {name}: {kind}"
    for name, kind in protocol.ITEM_FIELDS.get(op, {}).items():
        assert f"{name}: {kind}" in text, f"{op}: items.{name}"


def test_the_documented_sections_are_exactly_the_ops() -> None:
    assert re.findall(r"^### `(\w+)`", DOC, re.M) == list(protocol.OPS)


def test_error_kinds_and_constants_match_the_code() -> None:
    for kind in NodeErrorKind:
        assert f"`{kind.value}`" in DOC
    codes = ", ".join(str(c) for c in protocol.BUSY_WIN32_ERRORS[:-1])
    assert f"Win32 errors {codes} and {protocol.BUSY_WIN32_ERRORS[-1]}" in DOC
    assert f"at most {protocol.REPLACE_ATTEMPTS} attempts" in DOC
    assert f"{int(protocol.REPLACE_FIRST_DELAY * 1000)} ms doubling" in DOC
    assert f"`v` is {protocol.PROTOCOL_VERSION}" in DOC
