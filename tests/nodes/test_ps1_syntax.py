"""Static guards for the PowerShell node agent (no PowerShell runs on this machine).

Every .ps1 resource, the bootstrap (as written and as put on the command line) and every
assembled op script (common + op) must parse with tree-sitter-powershell without ERROR or
MISSING nodes; a few project rules are checked on the syntax tree too. If ``pwsh`` is on
PATH the scripts also run for real through the shared contract cases.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import tree_sitter_powershell as tsp
from tree_sitter import Language, Node, Parser

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes import psagent
from tests.nodes.contract_cases import (
    CONTRACT_CASES,
    SECRET_HEX,
    ContractCase,
    ProcessAgentNode,
    case_id,
)
from tests.nodes.session_cases import SESSION_CASES, SessionCase, session_case_id

PARSER = Parser(Language(tsp.language()))
SCRIPT_DIR = resources.files("farmsync.nodes").joinpath("scripts")
PS1_FILES = sorted(p.name for p in SCRIPT_DIR.iterdir() if p.name.endswith(".ps1"))


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def syntax_errors(script: str) -> list[str]:
    """Where tree-sitter found an ERROR or MISSING node, as 'line:col type' strings."""
    tree = PARSER.parse(script.encode("utf-8"))
    bad = [n for n in walk(tree.root_node) if n.is_error or n.is_missing]
    return [f"{n.start_point[0] + 1}:{n.start_point[1] + 1} {n.type}/{n.is_missing}" for n in bad]


def text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def test_the_script_set_is_complete() -> None:
    expected = {f"{op}.ps1" for op in psagent.OPS} | {"common.ps1", "bootstrap.ps1"}
    assert set(PS1_FILES) == expected


@pytest.mark.parametrize("name", PS1_FILES)
def test_every_ps1_resource_parses(name: str) -> None:
    assert syntax_errors(psagent.resource_text(name)) == []


@pytest.mark.parametrize("op", psagent.OPS)
def test_every_assembled_op_script_parses(op: str) -> None:
    assert syntax_errors(psagent.load_script(op)) == []


def test_bootstrap_parses_as_written_and_as_sent() -> None:
    assert syntax_errors(psagent.BOOTSTRAP) == []
    sent = base64.b64decode(psagent.encoded_bootstrap()).decode("utf-16-le")
    assert syntax_errors(sent) == []
    assert "Invoke-FarmsyncRequest" in sent


def code_tokens(script: str) -> list[str]:
    """The script's leaves, comments left out: what PowerShell runs, whatever the layout.
    A line break is a statement separator, so ``new_line`` leaves count too (one per run of
    them: blank lines are not code)."""
    tree = PARSER.parse(script.encode("utf-8"))
    tokens: list[str] = []
    for node in walk_in_order(tree.root_node):
        if node.child_count or node.type == "comment":
            continue
        token = "\n" if text(node).strip() == "" else text(node)
        if token == "\n" and tokens and tokens[-1] == "\n":
            continue
        tokens.append(token)
    return tokens


def walk_in_order(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk_in_order(child)


@pytest.mark.parametrize("op", psagent.OPS)
def test_the_compacted_script_sent_is_the_same_code(op: str) -> None:
    # load_script drops comment lines, blank lines and indentation (a third of the bytes of
    # every request): the code PowerShell compiles must be token for token the written one,
    # here-string bodies (Add-Type's C#) byte for byte.
    written = (
        psagent.ps1_fragment(op)
        + psagent.resource_text("common.ps1")
        + "\n"
        + psagent.resource_text(f"{op}.ps1")
    )
    sent = psagent.load_script(op)
    assert len(sent) < len(written) * 3 // 4
    assert code_tokens(sent) == code_tokens(written)


def test_the_compacted_bootstrap_sent_is_the_same_code() -> None:
    # The bootstrap goes through the same compaction (encoded_bootstrap): PowerShell must
    # run token for token the bootstrap as written, not only something that parses.
    sent = base64.b64decode(psagent.encoded_bootstrap()).decode("utf-16-le")
    assert len(sent) < len(psagent.BOOTSTRAP) * 3 // 4
    assert code_tokens(sent) == code_tokens(psagent.BOOTSTRAP)


@pytest.mark.parametrize(
    "script",
    [
        "<#\n  A block comment.\n#>\n$a = 1\n",
        "<# one\n  # two\n##>\n$a = 1\n",
        "$a = 1 <# inline\n#> + 2\n$b = @'\n# kept\n  as is\n'@\n",
    ],
)
def test_compaction_keeps_block_comments_closed(script: str) -> None:
    compacted = psagent._compact(script)
    assert syntax_errors(compacted) == []
    assert code_tokens(compacted) == code_tokens(script)
    assert "$a" in compacted


def test_the_token_comparison_sees_a_changed_string_and_a_joined_line() -> None:
    assert code_tokens("$a = 'x  y'\n") != code_tokens("$a = 'x y'\n")
    assert code_tokens("$a = 1\n$b = 2\n") != code_tokens("$a = 1 $b = 2\n")
    assert code_tokens("# note\n  $a = 1\n\n") == code_tokens("$a = 1\n")


@pytest.mark.parametrize(
    "broken",
    [
        "function Get-X {\n    param([string]$Path)\n    if ($Path) { return 1 \n}\n",
        "$x = @{ a = 1; b = \n",
        "foreach ($i in @(1, 2) { $i }\n",
        "try { Get-Item -LiteralPath 'x' } catch {\n",
        "$s = 'unterminated\n",
    ],
)
def test_the_checker_catches_broken_scripts(broken: str) -> None:
    assert syntax_errors(broken) != []


def test_command_line_is_short_fixed_and_carries_nothing_variable() -> None:
    line = psagent.command_line()
    assert len(line) < psagent.CMD_EXE_LIMIT
    assert line.startswith("powershell.exe -NoLogo -NoProfile -NonInteractive ")
    assert line == psagent.command_line()
    # Whatever the request, nothing of it reaches the command line.
    request = psagent.request_line(
        "stage",
        {
            "run_id": "r1",
            "items": [
                {
                    "path": r"C:\inetpub\wwwroot\web.config",
                    "content_b64": base64.b64encode(SECRET_HEX.encode()).decode(),
                    "expected_sha256": "0" * 64,
                }
            ],
        },
    )
    assert request.strip().decode() not in line
    for needle in ("inetpub", "web.config", SECRET_HEX, "machineKey"):
        assert needle not in line
        assert needle not in base64.b64decode(line.rsplit(" ", 1)[1]).decode("utf-16-le")


@pytest.mark.parametrize("op", psagent.OPS)
def test_request_lines_round_trip(op: str) -> None:
    args = {"paths": ["C:\\Windows\\Microsoft.NET\\web.config", "é"], "run_id": "r1", "n": 3}
    line = psagent.request_line(op, args)
    assert line.endswith(b"\r\n") and line.isascii() and b"\n" not in line[:-2]
    decoded = psagent.decode_request_line(line)
    assert decoded == {"v": 1, "op": op, "script": psagent.load_script(op), "args": args}


def test_large_requests_split_into_bounded_chunks() -> None:
    line = psagent.request_line("stage", {"blob": "A" * (3 * psagent.MAX_CHUNK)})
    chunks = list(psagent.iter_chunks(line))
    assert b"".join(chunks) == line
    assert all(len(c) <= psagent.MAX_CHUNK for c in chunks) and len(chunks) == 5


# --- project rules, checked on the syntax trees ----------------------------------------------


def commands(script: str) -> list[tuple[str, list[str]]]:
    """(command name, its -parameters) of every command invocation."""
    tree = PARSER.parse(script.encode("utf-8"))
    found = []
    for node in walk(tree.root_node):
        if node.type != "command":
            continue
        name = node.child_by_field_name("command_name")
        if name is None:
            continue
        params = [text(n) for n in walk(node) if n.type == "command_parameter"]
        found.append((text(name), params))
    return found


def defined_functions(script: str) -> set[str]:
    tree = PARSER.parse(script.encode("utf-8"))
    names = set()
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            for child in node.children:
                if child.type == "function_name":
                    names.add(text(child).lower())
    return names


@pytest.mark.parametrize("name", PS1_FILES)
def test_scripts_stop_on_errors_and_use_literal_paths(name: str) -> None:
    script = psagent.resource_text(name)
    assert re.search(r"^\$ErrorActionPreference = 'Stop'$", script, re.M)
    for command, params in commands(script):
        assert command.lower() not in {"invoke-expression", "iex"}
        if "farmsync" in command.lower() or command == "Join-Path":
            continue  # our own functions' -Path, and Join-Path, do not expand wildcards
        lowered = [p.lower() for p in params]
        assert "-path" not in lowered, f"{command} uses -Path (wildcards): use -LiteralPath"


def undefined_farmsync_calls(script: str) -> set[str]:
    """Calls of Verb-Farmsync* functions that no function statement defines."""
    called = {c.lower() for c, _ in commands(script) if FARMSYNC_FUNCTION.fullmatch(c)}
    return called - defined_functions(script)


FARMSYNC_FUNCTION = re.compile(r"[A-Za-z]+-Farmsync[A-Za-z0-9]*")


@pytest.mark.parametrize("op", psagent.OPS)
def test_every_farmsync_function_called_is_defined(op: str) -> None:
    script = psagent.BOOTSTRAP + "\n" + psagent.load_script(op)
    assert "invoke-farmsyncop" in defined_functions(script)
    assert undefined_farmsync_calls(script) == set()


def test_the_call_checker_catches_a_typo() -> None:
    script = "function Get-FarmsyncThing { 1 }\nGet-FarmsyncThign\n"
    assert undefined_farmsync_calls(script) == {"get-farmsyncthign"}


def test_error_kinds_in_scripts_are_node_error_kinds() -> None:
    valid = {k.value for k in NodeErrorKind}
    used: set[str] = set()
    for name in PS1_FILES:
        script = psagent.resource_text(name)
        used |= set(re.findall(r"New-FarmsyncError '([a-z-]+)'", script))
        used |= set(re.findall(r"return '([a-z-]+)'", script)) - {"true", "false", "null"}
        used |= set(re.findall(r"\$farmsyncKind = '([a-z-]+)'", script))
    assert {
        "changed-since-read",
        "permission-denied",
        "disk-full",
        "not-found",
        "is-directory",
        "protocol",
    } <= used
    assert used <= valid


def test_error_mapping_covers_the_windows_failures() -> None:
    common = psagent.resource_text("common.ps1")
    for needle in (
        "UnauthorizedAccessException",
        "0x70",
        "DirectoryNotFoundException",
        "FileNotFoundException",
        "'is-directory'",
    ):
        assert needle in common + psagent.resource_text("read.ps1")
    # Backups are created exclusively, never by ReplaceFile (which replaces an existing one):
    # the release steps commit.ps1 and stage_commit.ps1 share (common.ps1).
    assert "Write-FarmsyncNewFile -Path $backup -Bytes $live -LikePath $target -Exclusive" in common
    assert "[System.IO.File]::Replace($Staging, $Target, [NullString]::Value)" in common
    assert "'backup-exists'" in common
    for op in ("commit", "stage_commit"):
        assert "Invoke-FarmsyncCommitItems -Items $items" in psagent.resource_text(f"{op}.ps1")
    assert "FileStream" in common and "Flush($true)" in common and "WriteThrough" in common
    assert "GetAccessControl($From, $sections)" in common
    assert "SetAccessControl($To, $acl)" in common


def test_issue_14_rules_hold_in_the_scripts() -> None:
    """What PowerShell cannot prove here, read from the scripts: same rules as the twin."""
    common = psagent.resource_text("common.ps1")
    read = psagent.resource_text("read.ps1")
    # Bounded reads: only seekable (regular) files, the length checked before reading, the
    # read stopping one byte past the limit.
    assert "$FarmsyncMaxFileBytes = 8 * 1024 * 1024" in common
    assert "-not $stream.CanSeek" in common and "'not-a-regular-file'" in common
    assert "$stream.Length -gt $FarmsyncMaxFileBytes" in common and "'too-large'" in common
    assert "[byte[]]::new($FarmsyncMaxFileBytes + 1)" in common
    assert "ReadAllBytes" not in common + read
    # Identity: volume serial + file index of the open handle, and the machine's GUID.
    assert "GetFileInformationByHandle" in common and "VolumeSerialNumber" in common
    assert "RegistryView]::Registry64" in common and "'MachineGuid'" in common
    assert "file_id = $fileId" in common and "machine_id = (Get-FarmsyncMachineId)" in read
    assert "Read-FarmsyncState -Path $path" in read  # the entry stage_commit's verify reuses
    # The rollback fences first, then acts on what the live file holds.
    rollback = psagent.resource_text("rollback.ps1")
    fence = rollback.index("Remove-FarmsyncFile -Path (Get-FarmsyncStagingPath")
    assert fence < rollback.index("Get-FarmsyncHashOrNull -Target $target")
    assert fence < rollback.index("Restore-FarmsyncBackup")
    assert "'verify-mismatch'" in rollback
    # Backups by run id, never by file time; never the run in progress.
    assert "LastWriteTimeUtc.Ticks" not in common and "CompareOrdinal($b.RunId, $a.RunId)" in common
    assert "$backups[$i].RunId -cne $RunId" in common
    assert "Invoke-FarmsyncCleanupPaths" in psagent.resource_text("cleanup.ps1")


# --- the real thing, where PowerShell exists ---------------------------------------------------
# pwsh cannot be installed on this machine; where it exists, the real scripts run the whole
# shared contract (every case), the session cases (many requests and stage_commit in one
# process, tests/nodes/session_cases.py) and the protocol's refusals, through the same
# bootstrap.

PWSH = shutil.which("pwsh")
needs_pwsh = pytest.mark.skipif(
    PWSH is None, reason="pwsh not installed: PowerShell scripts are checked statically only"
)


def pwsh_argv() -> list[str]:
    assert PWSH is not None
    return [
        PWSH,
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-EncodedCommand",
        psagent.encoded_bootstrap(),
    ]


@needs_pwsh
@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_powershell_scripts_pass_the_contract_case(case: ContractCase, tmp_path: Path) -> None:
    case(ProcessAgentNode(pwsh_argv()), tmp_path)


@needs_pwsh
@pytest.mark.parametrize("case", SESSION_CASES, ids=session_case_id)
def test_powershell_serves_a_session(case: SessionCase, tmp_path: Path) -> None:
    # One pwsh process, many requests, stage_commit included: the same cases the twin runs.
    case(pwsh_argv(), tmp_path)


@needs_pwsh
@pytest.mark.parametrize("op", psagent.OPS)
def test_powershell_refuses_a_request_missing_its_arguments(op: str) -> None:
    done = subprocess.run(
        pwsh_argv(), input=psagent.request_line(op, {}), capture_output=True, timeout=60
    )
    with pytest.raises(NodeError) as info:
        psagent.parse_output(done.stdout, stderr=done.stderr)
    assert info.value.kind is NodeErrorKind.PROTOCOL
    assert "missing or not" in info.value.detail


@needs_pwsh
def test_powershell_doctor_answers_like_the_twin(tmp_path: Path) -> None:
    from farmsync.nodes.doctor_probe import probe

    config = tmp_path / "web.config"
    config.write_bytes(b"<configuration/>")
    done = subprocess.run(
        pwsh_argv(),
        input=psagent.request_line("doctor", {"paths": [str(config)]}),
        capture_output=True,
        timeout=60,
    )
    answer = psagent.parse_output(done.stdout, stderr=done.stderr)
    assert set(answer) == set(probe([str(config)]))
    (entry,) = answer["files"]
    assert entry["replaceable"] is True and entry["exists"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.config"]
