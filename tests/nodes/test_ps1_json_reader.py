"""The PowerShell agent's request reading, with its own regular expressions, in Python.

No PowerShell runs here, but the two regular expressions that carry the request are plain
.NET regexes whose constructs (classes, alternation, greedy loops, anchors) mean the same in
Python's ``re``: the bootstrap's ``"script":"…"`` extraction and common.ps1's JSON token
pattern. This test takes both from the scripts as written and replays what the scripts do
with them (a line-by-line port of ConvertFrom-FarmsyncJsonText / Read-FarmsyncJsonValue,
Regex.Unescape standing in as the JSON string decoder) on every request psagent builds.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from farmsync.nodes import protocol, psagent
from farmsync.nodes.contract import CommitItem, StageItem
from tests.nodes.contract_cases import NEW, OLD, SECRET_HEX, sha


def ps_single_quoted(script: str, variable_or_call: str) -> str:
    """The single-quoted string literal that follows ``variable_or_call`` in ``script``."""
    match = re.search(re.escape(variable_or_call) + r"\s*'((?:[^']|'')*)'", script)
    assert match, variable_or_call
    return match.group(1).replace("''", "'")


TOKEN = re.compile(ps_single_quoted(psagent.resource_text("common.ps1"), "$FarmsyncJsonToken ="))
SCRIPT = re.compile(ps_single_quoted(psagent.BOOTSTRAP, "[regex]::Match($farmsyncJson,"))
PREFIX = re.compile(ps_single_quoted(psagent.BOOTSTRAP, "[regex]::IsMatch($farmsyncJson,"))
# The escapes .NET's Regex.Unescape decodes the way JSON means them (json.dumps emits no other).
JSON_ESCAPES = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')


def regex_unescape(text: str) -> str:
    assert not re.sub(JSON_ESCAPES, "", text).count("\\"), (
        "an escape Regex.Unescape reads differently"
    )
    return str(json.loads(f'"{text}"'))


def read_json(text: str) -> Any:
    """ConvertFrom-FarmsyncJsonText, step by step."""
    tokens = [m.group(0) for m in TOKEN.finditer(text)]
    if TOKEN.sub("", text).strip():
        raise ValueError("request is not JSON")
    index = 0

    def token() -> str:
        nonlocal index
        if index >= len(tokens):
            raise ValueError("request is not JSON")
        index += 1
        return tokens[index - 1]

    def value() -> Any:
        nonlocal index
        current = token()
        if current == "{":
            obj: dict[str, Any] = {}
            if index < len(tokens) and tokens[index] == "}":
                index += 1
                return obj
            while True:
                key = token()
                if not key.startswith('"') or token() != ":":
                    raise ValueError("request is not JSON")
                obj[regex_unescape(key[1:-1])] = value()
                following = token()
                if following == "}":
                    return obj
                if following != ",":
                    raise ValueError("request is not JSON")
        if current == "[":
            items: list[Any] = []
            if index < len(tokens) and tokens[index] == "]":
                index += 1
                return items
            while True:
                items.append(value())
                following = token()
                if following == "]":
                    return items
                if following != ",":
                    raise ValueError("request is not JSON")
        if current.startswith('"'):
            return regex_unescape(current[1:-1])
        if current in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[current]
        if re.fullmatch(r"-?[0-9]+", current):
            return int(current)
        if re.match(r"-?[0-9]", current):
            return float(current)
        raise ValueError("request is not JSON")

    result = value()
    if index != len(tokens):
        raise ValueError("request is not JSON")
    return result


def requests() -> list[tuple[str, dict[str, Any]]]:
    path = 'C:\\inetpub\\Sité "quoted"\\web.config'
    return [
        ("read", psagent.read_args([path, "%windir%\\x", "/tmp/é/ü"])),
        (
            "stage",
            psagent.stage_args([StageItem(path, NEW + bytes(range(256)), sha(OLD))], "r-1.a"),
        ),
        ("commit", psagent.commit_args([CommitItem(path, sha(OLD), sha(NEW))], "r1")),
        (
            "stage_commit",
            {
                "run_id": "20261127T130000Z-a.b",
                "items": [
                    {
                        "path": path,
                        "content_b64": base64.b64encode(NEW + bytes(range(256))).decode(),
                        "expected_sha256": sha(OLD),
                        "staged_sha256": sha(NEW + bytes(range(256))),
                    }
                ],
                "keep_backups": 0,
            },
        ),
        ("cleanup", psagent.cleanup_args([path], "r1", 10)),
        (
            "recycle",
            {"kind": "command", "command": 'net stop "W3SVC" & echo \t ok', "app_pools": []},
        ),
        ("recycle", {"kind": "none", "command": None, "app_pools": ["Shop", "Blog"]}),
        ("doctor", {"paths": []}),
        ("audit", {"paths": [path], "scan_dirs": [], "iis": True, "windows_facts": False}),
    ]


@pytest.mark.parametrize(("op", "args"), requests(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_bootstrap_finds_the_script_and_common_parses_the_request(
    op: str, args: dict[str, Any]
) -> None:
    line = psagent.request_line(op, args)
    text = base64.b64decode(line.strip()).decode("utf-8")
    assert PREFIX.search(text), "the version check would refuse this request"
    script = SCRIPT.search(text)
    assert script is not None
    assert regex_unescape(script.group(1)) == psagent.load_script(op)
    parsed = read_json(text)
    assert parsed["args"] == args
    protocol.check_args(op, parsed["args"])  # and the types are what the table says


def test_key_material_comes_back_byte_for_byte() -> None:
    item = StageItem("p", SECRET_HEX.encode() + b"\x00\xff", sha(OLD))
    text = base64.b64decode(psagent.request_line("stage", psagent.stage_args([item], "r1")))
    parsed = read_json(text.decode())
    assert base64.b64decode(parsed["args"]["items"][0]["content_b64"]) == item.new_content


@pytest.mark.parametrize(
    "text",
    ['{"v":1,"args":{"a":1}', '{"v":1,"args":tru}', '{"v":1,,}', '{"v":1 "x":2}', "[1,2", '"\\q"'],
)
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises((ValueError, AssertionError)):
        read_json(text)


def test_the_version_prefix_is_what_psagent_writes() -> None:
    text = base64.b64decode(psagent.request_line("read", {"paths": []})).decode()
    assert PREFIX.search(text)
    assert not PREFIX.search(text.replace('"v":1', '"v":2'))


def test_a_session_compiles_each_op_script_once() -> None:
    # The bootstrap keys its compiled blocks by the script text it extracts (ordinal): every
    # request of one op carries the same text whatever its arguments, and ops differ.
    lines = [psagent.request_line(op, args) for op, args in requests()]
    lines.append(psagent.request_line("read", psagent.read_args(["C:\\other\\web.config"])))
    keys = []
    for line in lines:
        text = base64.b64decode(line.strip()).decode("utf-8")
        found = SCRIPT.search(text)
        assert found is not None
        keys.append(regex_unescape(found.group(1)))
    ops = [op for op, _ in requests()] + ["read"]
    assert len(set(keys)) == len(set(ops))
    assert all(key == psagent.load_script(op) for key, op in zip(keys, ops, strict=True))
