"""The PowerShell agent against the protocol table and the event-log rules, statically.

No PowerShell runs here, so what can be decided from the syntax trees is decided there:
  * no cmdlet receives request data (module logging, event 4103, records cmdlet parameters
    and pipeline input): every command that is not one of farmsync's own functions takes
    constant arguments only, no pipeline feeds one, no ``& $variable``;
  * nothing reads ``$input``; no ConvertFrom-Json / ConvertTo-Json;
  * every op of the table has its script and the twin serves it, and the reverse;
  * each ``<op>.ps1`` reads exactly the arguments (and item fields) the table lists;
  * each contract case's requests, run through the twin, get answers whose keys and error
    kinds the ``.ps1`` declares.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tree_sitter import Node

from farmsync.errors import NodeErrorKind
from farmsync.nodes import agent, protocol, psagent
from farmsync.nodes.contract import (
    DEFAULT_BACKUP_RETENTION,
    ArmedCommit,
    CommitItem,
    FileState,
    NodeOperations,
    StageItem,
)
from tests.nodes.contract_cases import CONTRACT_CASES, ContractCase, case_id
from tests.nodes.test_ps1_syntax import (
    FARMSYNC_FUNCTION,
    PARSER,
    PS1_FILES,
    commands,
    text,
    walk,
)

OP_SCRIPTS = [f"{op}.ps1" for op in protocol.OPS]


def tree(script: str) -> Node:
    return PARSER.parse(script.encode("utf-8")).root_node


def _is_constant(node: Node) -> bool:
    """A command argument with nothing variable in it: a bare word, a literal, a -Parameter."""
    for inner in walk(node):
        if inner.type in (
            "variable",
            "script_block_expression",
            "sub_expression",
            "braced_variable",
        ):
            return False
        if inner.type in ("invokation_expression", "member_access", "element_access"):
            return False
    return True


def cmdlet_violations(script: str) -> list[str]:
    """Commands other than farmsync's own functions that could see request data."""
    found: list[str] = []
    for node in walk(tree(script)):
        if node.type != "command":
            continue
        name = node.child_by_field_name("command_name")
        if name is None:  # & $x or . $x: a command named by a variable
            operator = next(
                (c for c in node.children if c.type == "command_invokation_operator"), None
            )
            target = text(node)
            if not (
                operator is not None and text(operator) == "." and target == ". $farmsyncBlock"
            ):
                found.append(f"invocation of a computed command: {target}")
            continue
        command = text(name)
        if FARMSYNC_FUNCTION.fullmatch(command):
            continue
        elements = node.child_by_field_name("command_elements")
        arguments = [
            c for c in (elements.children if elements else []) if c.type != "command_argument_sep"
        ]
        for argument in arguments:
            if not _is_constant(argument):
                found.append(f"{command} gets a non-constant argument: {text(argument)}")
        parent = node.parent
        if parent is not None and parent.type == "pipeline_chain" and parent.children[0] != node:
            found.append(f"{command} gets pipeline input")
    return found


def test_the_rule_catches_cmdlets_that_see_data() -> None:
    bad = (
        "ConvertFrom-Json -InputObject $json\n"
        "$items | ForEach-Object { $_.path }\n"
        "Test-Path -LiteralPath $path\n"
        "& $appcmd list apppool\n"
        "Restart-WebAppPool -Name ($pool.Name)\n"
        'Get-Item "$path"\n'
    )
    assert len(cmdlet_violations(bad)) == 6
    good = "Add-Type -AssemblyName 'System.ServiceProcess'\nWrite-FarmsyncLine -Object $x\n"
    assert cmdlet_violations(good) == []


@pytest.mark.parametrize("name", PS1_FILES)
def test_no_cmdlet_receives_request_data(name: str) -> None:
    assert cmdlet_violations(psagent.resource_text(name)) == []


@pytest.mark.parametrize("op", protocol.OPS)
def test_the_generated_fragment_and_assembled_scripts_keep_the_rule(op: str) -> None:
    assert cmdlet_violations(psagent.load_script(op)) == []


@pytest.mark.parametrize("name", PS1_FILES)
def test_no_script_reads_input_or_uses_the_json_cmdlets(name: str) -> None:
    script = psagent.resource_text(name)
    variables = {text(n).lower() for n in walk(tree(script)) if n.type == "variable"}
    assert "$input" not in variables
    names = {text(n).lower() for n in walk(tree(script)) if n.type == "command_name"}
    assert not names & {"convertfrom-json", "convertto-json"}


INPUT_VARIABLE = re.compile(
    r"\$\{?(?:(?:global|local|script|private|using):)?input\}?\Z", re.IGNORECASE
)


def input_variables(script: str) -> list[str]:
    """Every reference to the automatic variable ``$input``, however it is spelt (case,
    braces, a scope modifier); ``$env:input`` is an environment variable, not it."""
    return [
        text(n)
        for n in walk(tree(script))
        if n.type == "variable" and INPUT_VARIABLE.match(text(n))
    ]


def test_the_host_never_reads_stdin_itself() -> None:
    # powershell.exe parses the -EncodedCommand text, and if it names $input anywhere
    # (AstSearcher.IsUsingDollarInput) the console host reads stdin alongside the script
    # with a reader of its own (ExecutionOptions.ReadInputObjects) and feeds every line to
    # $input: request lines and release words would be eaten before [Console]::In saw them.
    # Only "-Command -" / "-File -" (commands from stdin) or -NoExit start its input loop.
    sent = base64.b64decode(psagent.encoded_bootstrap()).decode("utf-16-le")
    assert input_variables(sent) == [] and input_variables(psagent.BOOTSTRAP) == []
    for name in PS1_FILES:
        assert input_variables(psagent.resource_text(name)) == [], name
    arguments = psagent.command_line().split()
    assert arguments[-2] == "-EncodedCommand" and arguments.count("-EncodedCommand") == 1
    assert not {a.lower() for a in arguments} & {"-command", "-c", "-file", "-f", "-noexit", "-"}
    spelt = "$x = ${Input}\n$y = $local:INPUT\n$z = @($input)\n$w = $env:input\n"
    assert sorted(input_variables(spelt)) == ["$input", "$local:INPUT", "${Input}"]


def test_the_bootstrap_checks_the_floor_before_reading_and_speaks_powershell_2() -> None:
    boot = psagent.BOOTSTRAP
    assert boot.index("$farmsyncVersion.Major -lt 5") < boot.index("[Console]::In.ReadLine()")
    assert boot.index("LanguageMode") < boot.index("[Console]::In.ReadLine()")
    assert "Revision -lt 42000" in boot  # .NET 4.6 reports CLR 4.0.30319.42000
    assert "::new(" not in boot  # PowerShell 5 syntax would fail before the check could speak
    # Failures name stage, exception type, version and language mode; never request text.
    assert "$farmsyncStage" in boot and "GetType().FullName" in boot
    assert "$farmsyncLine" not in boot[boot.index("} catch {") :]
    assert "$farmsyncJson" not in boot[boot.index("} catch {") :]


# Syntax PowerShell 3.0 and later added (about_Operators, about_Classes, about_Enum,
# about_Using, about_Redirection): a 2.0 parser refuses the whole -EncodedCommand on it, and
# an old shell would then not say what it is.
NEWER_THAN_POWERSHELL_2 = re.compile(
    r"-(?:[ic]?(?:not)?in|shl|shr)\b|::new\(|\[ordered\]|\$PSItem\b|[3-6*]>|"
    r"^\s*(?:class|enum|using|configuration|workflow)\b",
    re.IGNORECASE | re.MULTILINE,
)


def newer_syntax(script: str) -> list[str]:
    """Constructs newer than PowerShell 2.0 in ``script``'s code (comments and string
    literals blanked out, so that prose such as "built-in" is not taken for ``-in``)."""
    code = bytearray(script.encode("utf-8"))
    for node in walk(tree(script)):
        if node.type in ("comment", "string_literal", "expandable_string_literal"):
            code[node.start_byte : node.end_byte] = b" " * (node.end_byte - node.start_byte)
    found = NEWER_THAN_POWERSHELL_2.finditer(code.decode("utf-8"))
    return [m.group(0).strip() for m in found]


def test_the_bootstrap_as_sent_keeps_to_powershell_2_syntax() -> None:
    sent = base64.b64decode(psagent.encoded_bootstrap()).decode("utf-16-le")
    assert newer_syntax(sent) == [] and newer_syntax(psagent.BOOTSTRAP) == []
    later = "if ($a -in $b -or $c -shl 2) { [ordered]@{} }\n$x = [Text.StringBuilder]::new()\n"
    assert newer_syntax(later) == ["-in", "-shl", "[ordered]", "::new("]
    assert newer_syntax("# -in here is prose\n$x = 'built-in -shl'\n") == []


def test_fips_safe_hashing_and_no_dead_helpers() -> None:
    every = "".join(psagent.resource_text(n) for n in PS1_FILES)
    assert "SHA256CryptoServiceProvider" in every
    assert "SHA256]::Create" not in every and "Get-FileHash" not in every
    assert "Get-FarmsyncFileHash" not in every


def test_commit_word_is_compared_case_sensitively() -> None:
    commit = psagent.resource_text("commit.ps1")
    assert f"$word -cne '{protocol.COMMIT_WORD}'" in commit
    assert protocol.COMMIT_WORD.encode() + b"\r\n" == psagent.COMMIT_WORD


def test_busy_codes_and_retry_bounds_match_the_table() -> None:
    commit = psagent.resource_text("common.ps1")  # Invoke-FarmsyncReplace lives there
    codes = re.search(r"\$FarmsyncBusyCodes = @\(([0-9, ]+)\)", commit)
    assert codes is not None
    assert tuple(int(c) for c in codes.group(1).split(",")) == protocol.BUSY_WIN32_ERRORS
    assert f"$FarmsyncReplaceAttempts = {protocol.REPLACE_ATTEMPTS}\n" in commit
    delay_ms = int(protocol.REPLACE_FIRST_DELAY * 1000)
    assert f"$FarmsyncReplaceFirstDelayMs = {delay_ms}\n" in commit


# --- one table of ops, on both sides ---------------------------------------------------------


def test_every_table_op_has_a_script_and_every_script_an_op() -> None:
    scripts = {name.removesuffix(".ps1") for name in PS1_FILES} - {"common", "bootstrap"}
    assert scripts == set(protocol.OPS)
    assert psagent.OPS == agent.OPS == protocol.OPS


@pytest.mark.parametrize("op", protocol.OPS)
def test_the_twin_serves_every_op_and_checks_its_arguments(op: str) -> None:
    # An empty args object: the twin must know the op and name the first missing argument.
    line = base64.b64encode(json.dumps({"v": 1, "op": op, "args": {}}).encode())
    with pytest.raises(agent.AgentError) as info:
        agent.decode_request(line)
    first, kind = next(iter(protocol.OP_ARGS[op].items()))
    if kind == protocol.OPTIONAL_STRING:
        pytest.fail("the first argument of an op should be required")
    assert info.value.kind is NodeErrorKind.PROTOCOL
    assert info.value.detail == protocol.mismatch(first, kind)


def member_reads(script: str, variable: str) -> set[str]:
    """Names read as ``$variable.name`` anywhere in ``script`` (PowerShell variable names are
    case-insensitive; the names read are JSON keys of an ordinal dictionary: exact)."""
    return set(re.findall(rf"\$(?i:{variable})\.([A-Za-z_][A-Za-z0-9_]*)", script))


def function_bodies(script: str) -> dict[str, str]:
    """The text of every function statement of ``script``, by lower-case name."""
    bodies: dict[str, str] = {}
    for node in walk(tree(script)):
        if node.type == "function_statement":
            name = next(text(c) for c in node.children if c.type == "function_name")
            bodies[name.lower()] = text(node)
    return bodies


def reachable_functions(op: str) -> dict[str, str]:
    """The functions a request of ``op`` can run: Invoke-FarmsyncRequest (what the bootstrap
    calls) and every farmsync function it calls, transitively, in the assembled script."""
    bodies = function_bodies(psagent.load_script(op))
    found: dict[str, str] = {}
    todo = ["invoke-farmsyncrequest"]
    while todo:
        name = todo.pop()
        if name in found or name not in bodies:
            continue
        found[name] = bodies[name]
        todo += [c.lower() for c, _ in commands(bodies[name]) if FARMSYNC_FUNCTION.fullmatch(c)]
    return found


def op_reads(op: str, variable: str) -> set[str]:
    """What ``$variable.<name>`` reads the code of ``op`` makes, its shared steps included."""
    reads: set[str] = set()
    for body in reachable_functions(op).values():
        reads |= member_reads(body, variable)
    return reads


@pytest.mark.parametrize("op", protocol.OPS)
def test_each_script_reads_exactly_the_arguments_of_its_table_row(op: str) -> None:
    # The op script itself and the common.ps1 steps it calls (stage, commit, cleanup and
    # stage_commit share them): what a request of the op reads is what the table lists.
    assert member_reads(psagent.resource_text(f"{op}.ps1"), "Arguments") == set(
        protocol.OP_ARGS[op]
    )
    assert op_reads(op, "Arguments") == set(protocol.OP_ARGS[op])
    assert op_reads(op, "item") == set(protocol.ITEM_FIELDS.get(op, {}))


def test_the_reads_follow_calls_into_common() -> None:
    assert "invoke-farmsyncstageitems" in reachable_functions("stage_commit")
    assert "invoke-farmsynccommititems" not in reachable_functions("stage")
    assert "content_b64" in op_reads("stage", "item")
    assert "content_b64" not in op_reads("commit", "item")


@pytest.mark.parametrize("op", protocol.OPS)
def test_the_generated_fragment_is_the_table_row(op: str) -> None:
    fragment = protocol.ps1_fragment(op)
    declared = dict(re.findall(r"'([a-z_]+)' = '([a-z?{}\[\]]+)'", fragment.splitlines()[1]))
    assert declared == dict(protocol.OP_ARGS[op])
    common = psagent.resource_text("common.ps1")
    for kind in protocol.TYPES:  # every type the table uses is one Test-FarmsyncType knows
        assert f"$Type -ceq '{kind}'" in common


def test_the_type_check_agrees_with_the_twin_on_sample_values() -> None:
    # The twin's verdicts for the values the PowerShell parser can produce.
    assert protocol.type_ok(3, protocol.INT) and not protocol.type_ok(True, protocol.INT)
    assert not protocol.type_ok(None, protocol.INT)  # keep_backups missing is an error
    assert protocol.type_ok(None, protocol.OPTIONAL_STRING)
    assert not protocol.type_ok(None, protocol.STRING)  # a null content_b64 is refused
    assert not protocol.type_ok(["a", 1], protocol.STRING_LIST)
    with pytest.raises(protocol.ArgumentError, match=r"items\.content_b64"):
        protocol.check_args(
            "stage",
            {"run_id": "r", "items": [{"path": "p", "content_b64": None, "expected_sha256": ""}]},
        )


# --- contract cases through the twin vs what each script declares ---------------------------


def declared_result_keys(op: str) -> set[str]:
    """Keys of every ``return @{ … }`` in the op script's Invoke-FarmsyncOp."""
    script = psagent.resource_text(f"{op}.ps1")
    body = script[script.index("function Invoke-FarmsyncOp") :]
    keys: set[str] = set()
    for block in re.findall(r"return @\{(.*?)\}\s*$", body, re.S | re.M):
        keys |= set(re.findall(r"(?:^|;|\n)\s*([a-z_]+) = ", block))
    return keys | {"warnings"}  # added by Invoke-FarmsyncRequest (common.ps1)


def declared_error_kinds() -> set[str]:
    every = "".join(psagent.resource_text(n) for n in PS1_FILES)
    kinds = set(re.findall(r"New-FarmsyncError '([a-z-]+)'", every))
    kinds |= set(re.findall(r"return '([a-z-]+)'", every)) - {"true", "false", "null"}
    return kinds


class RecordingTwin(NodeOperations):
    """The twin's stdin protocol in-process (agent.decode_request / run_op), recording each
    request's op, answer keys and error kind: what the .ps1 must be able to say too."""

    def __init__(self) -> None:
        super().__init__("twin")
        self.seen: list[tuple[str, set[str], str | None]] = []

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _call(self, op: str, args: dict[str, Any], word: bytes = b"COMMIT\r\n") -> dict[str, Any]:
        line = psagent.request_line(op, args)
        self.round_trips += 1
        try:
            decoded_op, decoded = agent.decode_request(line)
            result = agent.run_op(decoded_op, decoded, lambda: word, lambda _: None)
        except agent.AgentError as err:
            self.seen.append((op, set(), err.kind.value))
            output = json.dumps({"ok": False, "error": err.to_json()}).encode()
            return psagent.parse_output(output, host="twin", phase=op)
        self.seen.append((op, set(result), None))
        return result

    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        return psagent.files_from_result(self._call("read", psagent.read_args(paths)))

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self._call("stage", psagent.stage_args(items, run_id))

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        node = self

        class Armed(ArmedCommit):
            word = b"ABORT\r\n"

            def release(self) -> None:
                self.word = b"COMMIT\r\n"

            def wait(self, timeout: float) -> None:
                node._call("commit", psagent.commit_args(items, run_id), self.word)

            def abort(self) -> None:
                node._call("commit", psagent.commit_args(items, run_id), self.word)

        return Armed()  # the twin's arm-time checks run in the one commit request

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self._call("rollback", psagent.rollback_args(paths, run_id, expected))

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        self._call("cleanup", psagent.cleanup_args(paths, run_id, keep_backups))

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return psagent.backups_from_result(
            self._call("list_backups", psagent.list_backups_args(paths))
        )

    def recycle(self) -> None:
        self._call("recycle", {"kind": "none", "command": None, "app_pools": []})


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=case_id)
def test_twin_answers_are_ones_the_scripts_declare(case: ContractCase, tmp_path: Path) -> None:
    twin = RecordingTwin()
    case(twin, tmp_path)
    assert twin.seen, "the case sent requests"
    kinds = declared_error_kinds()
    for op, keys, kind in twin.seen:
        assert keys <= declared_result_keys(op), f"{op}: twin answers {keys}"
        assert kind is None or kind in kinds, f"{op}: twin error {kind} no script can raise"


def test_the_parity_check_catches_an_undeclared_key() -> None:
    assert "committed" in declared_result_keys("commit")
    assert "aborted" in declared_result_keys("commit")
    assert "bogus" not in declared_result_keys("commit")
    assert {"restored", "skipped"} <= declared_result_keys("rollback")


def declared_verify_entry_keys() -> set[str]:
    """Keys of the entries Read-FarmsyncState (common.ps1) builds, as stage_commit's verify
    asks for them (-WithoutContent: its ok entry loses content_b64)."""
    body = function_bodies(psagent.resource_text("common.ps1"))["read-farmsyncstate"]
    assert "if ($WithoutContent) { $state.Remove('content_b64') }" in body
    keys: set[str] = set()
    for block in re.findall(r"@\{(.*?)\}", body, re.S):
        keys |= set(re.findall(r"(?:^|;|\n)\s*([a-z_][a-z0-9_]*) = ", block))
    return keys - {"content_b64"}


def twin_stage_commit(
    args: dict[str, Any], word: bytes = b"COMMIT\r\n"
) -> tuple[list[Any], dict[str, Any] | None, str | None]:
    """One stage_commit request through the twin in-process: (lines emitted before the
    answer, the result or None, the error kind or None)."""
    emitted: list[Any] = []
    try:
        op, decoded = agent.decode_request(psagent.request_line("stage_commit", args))
        result = agent.run_op(op, decoded, lambda: word, emitted.append)
    except agent.AgentError as err:
        return emitted, None, err.kind.value
    return emitted, result, None


def test_twin_stage_commit_answers_are_ones_the_script_declares(tmp_path: Path) -> None:
    from tests.nodes.contract_cases import NEW, OLD, live, sha
    from tests.nodes.session_cases import stage_commit_args

    declared, kinds = declared_result_keys("stage_commit"), declared_error_kinds()
    path = live(tmp_path / "released")
    emitted, result, kind = twin_stage_commit(stage_commit_args(path))
    assert emitted == [{"armed": True}] and kind is None and result is not None
    assert set(result) <= declared and {"committed", "files", "removed"} <= set(result)
    (entry,) = result["files"]
    assert set(entry) == declared_verify_entry_keys() - {"error_kind", "error"}
    assert entry["sha256"] == sha(NEW)

    path = live(tmp_path / "aborted")
    emitted, result, kind = twin_stage_commit(stage_commit_args(path), b"commit\r\n")
    assert emitted == [{"armed": True}] and result == {"aborted": True}
    assert set(result) <= declared

    refusals = {
        "changed-since-read": (live(tmp_path / "changed", content=NEW), 10),
        "not-found": (str(tmp_path / "absent.config"), 10),
        "protocol": (live(tmp_path / "retention"), -1),
    }
    path = live(tmp_path / "backup")
    Path(path + ".farmsync-run1.bak").write_bytes(OLD)
    refusals["backup-exists"] = (path, 10)
    for expected, (target, keep) in refusals.items():
        emitted, result, kind = twin_stage_commit(stage_commit_args(target, keep_backups=keep))
        assert (emitted, result, kind) == ([], None, expected), target
        assert kind in kinds


RECYCLE_PLANS: list[tuple[list[tuple[str, str]], list[str], list[str], int]] = [
    ([("A", "Started"), ("B", "Stopped")], [], ["A"], 1),
    ([("A", "Started"), ("B", "Started")], ["b"], ["B"], 0),
    ([("A", "Stopping")], ["A"], [], 1),
]


@pytest.mark.parametrize(("pools", "requested", "chosen", "warned"), RECYCLE_PLANS)
def test_iis_recycle_plan_started_pools_only(
    pools: list[tuple[str, str]], requested: list[str], chosen: list[str], warned: int
) -> None:
    got, warnings = agent.plan_iis_recycle(pools, requested)
    assert got == chosen and len(warnings) == warned
    assert all("not recycled" in w for w in warnings)
    script = psagent.resource_text("recycle.ps1")
    assert "$state -ne 'Started'" in script and "': not recycled'" in script


def test_iis_recycle_plan_refuses_an_unknown_pool() -> None:
    with pytest.raises(agent.AgentError) as info:
        agent.plan_iis_recycle([("A", "Started")], ["typo"])
    assert info.value.kind is NodeErrorKind.NOT_FOUND
    assert "no IIS application pool named" in psagent.resource_text("recycle.ps1")


def test_command_recycle_means_the_same_interpreter_on_both_sides() -> None:
    script = psagent.resource_text("recycle.ps1")
    assert "'/d /s /c \"' + $Command + '\"'" in script and "'cmd.exe'" in script
    assert "ScriptBlock" not in script.split("$ErrorActionPreference", 1)[1]
    assert agent.command_argv("exit 3") == ["/bin/sh", "-c", "exit 3"]


def test_duplicates_compare_as_ntfs_does_on_windows() -> None:
    common = psagent.resource_text("common.ps1")
    body = common[common.index("function Assert-FarmsyncUnique") :]
    body = body[: body.index("\n}\n")]
    assert "OrdinalIgnoreCase" in body and "Test-FarmsyncWindows" in body
    assert "Resolve-FarmsyncPath" in body  # compared after %VAR% expansion, as the twin does


def test_unexpected_exceptions_are_cut_never_quoted_whole() -> None:
    common = psagent.resource_text("common.ps1")
    body = common[common.index("function Get-FarmsyncErrorInfo") :]
    body = body[: body.index("\n}\n")]
    # Only farmsync's own errors (texts written in the scripts) pass their message through.
    assert body.count("$ex.Message") == 1
    assert "Get-FarmsyncShortMessage -Exception $ex" in body
    short = common[common.index("function Get-FarmsyncShortMessage") :]
    assert "Win32Exception" in short and "'...'" in short


def test_symlinks_are_refused_by_stage_and_commit_scripts() -> None:
    for op in ("stage", "commit", "stage_commit"):
        assert "assert-farmsyncnotlink" in reachable_functions(op)
    assert "ReparsePoint" in psagent.resource_text("common.ps1")


@pytest.mark.parametrize("name", PS1_FILES)
def test_no_script_trusts_dollar_question_mark(name: str) -> None:
    # `$?` after a pipeline reads the status of its last command (ForEach-Object), not of the
    # program: a failing recycle command once reported OK that way.
    variables = {text(n) for n in walk(tree(psagent.resource_text(name))) if n.type == "variable"}
    assert "$?" not in variables


def test_recycle_reports_iis_absent_and_was_stopped_clearly() -> None:
    script = psagent.resource_text("recycle.ps1")
    assert "'not-found' 'IIS is not installed on this node'" in script
    assert "Windows Process Activation Service (WAS) is " in script
    assert "$process.ExitCode -ne 0" in script  # the command's own status decides
    with pytest.raises(agent.AgentError) as info:
        agent.recycle("iis", None, [])  # no IIS on this machine: the same kind and words
    assert info.value.kind is NodeErrorKind.NOT_FOUND
    assert info.value.detail == "IIS is not installed on this node"


def test_doctor_answers_the_same_fields_on_both_agents(tmp_path: Path) -> None:
    from farmsync.nodes.doctor_probe import probe

    live_file = tmp_path / "web.config"
    live_file.write_bytes(b"<configuration/>")
    twin = probe([str(live_file), str(tmp_path / "absent.config")])
    assert declared_result_keys("doctor") - {"warnings"} == set(twin)
    script = psagent.resource_text("doctor.ps1")
    entry = re.search(r"\$entry = @\{(.*?)\}\n", script)
    assert entry is not None
    declared = set(re.findall(r"([a-z_]+) = ", entry.group(1)))
    declared |= set(re.findall(r"\$entry\.([a-z_]+) = ", script))
    ok, missing = twin["files"]
    assert set(ok) <= declared and set(missing) <= declared
    assert ok["replaceable"] is True and missing["error_kind"] == "not-found"


# --- sessions (PROTOCOL.md, "Sessions"): what the bootstrap loop must keep, statically -------

LOOPS = ("while_statement", "for_statement", "foreach_statement", "do_statement")
SCOPE_EDGES = ("function_statement", "script_block_expression")


def ancestors(node: Node) -> list[Node]:
    found = []
    parent = node.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


def stdin_reads(script: str) -> list[str]:
    """Every expression that names standard input: only ``[Console]::In.ReadLine()`` may."""
    pattern = r"\[(?:System\.)?Console\]::(?:In\b(?:\.\w+)?|OpenStandardInput|Read\w*)"
    return re.findall(pattern, script, re.I)


def test_stdin_is_read_only_through_console_in_readline() -> None:
    readers = set()
    for name in PS1_FILES:
        script = psagent.resource_text(name)
        reads = stdin_reads(script)
        assert all(r == "[Console]::In.ReadLine" for r in reads), f"{name}: {reads}"
        assert "Read-Host" not in script and "OpenStandardInput" not in script
        if reads:
            readers.add(name)
    # The bootstrap reads requests; commit and stage_commit read their release word; all
    # through the one Console.In reader, so no line is buffered away from the next read.
    assert readers == {"bootstrap.ps1", "commit.ps1", "stage_commit.ps1"}
    assert stdin_reads(psagent.BOOTSTRAP) == ["[Console]::In.ReadLine"]
    assert stdin_reads("$x = [Console]::In.ReadToEnd(); [Console]::Read()") == [
        "[Console]::In.ReadToEnd",
        "[Console]::Read",
    ]


def session_loop_problems(script: str) -> list[str]:
    """Why ``script`` is not a bootstrap that serves requests until end of input."""
    root = tree(script)
    loops = [n for n in walk(root) if n.type == "while_statement"]
    if len(loops) != 1:
        return [f"{len(loops)} while loops"]
    (loop,) = loops
    problems = []
    read = script.find("[Console]::In.ReadLine()")
    if not loop.start_byte < read < loop.end_byte:
        problems.append("the request is not read inside the loop")
    stops = [
        n
        for n in walk(loop)
        if n.type == "if_statement"
        and " ".join(text(n).split()) == "if ($null -eq $farmsyncLine) { break }"
    ]
    if not stops or stops[0].start_byte < read:
        problems.append("no break on end of input ($null) after the read")
    for floor in ("$farmsyncVersion.Major -lt 5", "LanguageMode", "Revision -lt 42000"):
        if not 0 <= script.find(floor) < loop.start_byte:
            problems.append(f"floor check {floor!r} not before the loop")
    return problems


def test_the_bootstrap_serves_requests_until_end_of_input() -> None:
    assert session_loop_problems(psagent.BOOTSTRAP) == []
    # The checker catches the one-request bootstrap this loop replaced.
    single = psagent.BOOTSTRAP[: psagent.BOOTSTRAP.index("    while ($true)")] + (
        "$farmsyncLine = [Console]::In.ReadLine()\n}\ncatch { }\n"
    )
    assert session_loop_problems(single) == ["0 while loops"]
    # The exit status is that of the last answer, set after the loop.
    assert psagent.BOOTSTRAP.rstrip().endswith("\nexit $farmsyncExit")
    exits = [n for n in walk(tree(psagent.BOOTSTRAP)) if n.type == "flow_control_statement"]
    assert [text(n) for n in exits if n.children[0].type == "exit"] == ["exit $farmsyncExit"]


def unscoped_dot_sources(script: str) -> list[str]:
    """Dot-sourcings that do not run inside ``& { ... }``: they would leave one request's
    functions and variables in the scope every later request runs from."""
    found = []
    for node in walk(tree(script)):
        if node.type != "command" or not text(node).startswith(". "):
            continue
        block = next((a for a in ancestors(node) if a.type == "script_block_expression"), None)
        call = block.parent.parent if block is not None and block.parent is not None else None
        operator = (
            next((c for c in call.children if c.type == "command_invokation_operator"), None)
            if call is not None and call.type == "command"
            else None
        )
        if operator is None or text(operator) != "&":
            found.append(text(node))
    return found


def test_each_request_runs_in_a_scope_of_its_own() -> None:
    boot = psagent.BOOTSTRAP
    assert unscoped_dot_sources(boot) == []
    assert "& { . $farmsyncBlock; Invoke-FarmsyncRequest }" in boot
    loop = next(n for n in walk(tree(boot)) if n.type == "while_statement")
    assert loop.start_byte < boot.index("& { . $farmsyncBlock") < loop.end_byte
    assert unscoped_dot_sources(". $farmsyncBlock\nexit (Invoke-FarmsyncRequest)\n") == [
        ". $farmsyncBlock"
    ]
    nested = unscoped_dot_sources("$x = . { . $farmsyncBlock }\n")
    assert nested == [". { . $farmsyncBlock }", ". $farmsyncBlock"]


def test_the_block_cache_is_keyed_by_exact_script_text() -> None:
    boot = psagent.BOOTSTRAP
    # No PowerShell hashtable (case-insensitive keys) anywhere in the bootstrap: the cache is
    # a Dictionary[string, ScriptBlock] built without a comparer, so its keys compare with
    # String.Equals, which is ordinal.
    assert not [n for n in walk(tree(boot)) if n.type == "hash_literal_expression"]
    created = re.findall(r"\$farmsyncBlocks = (.*)", boot)
    assert created == [
        "New-Object -TypeName 'System.Collections.Generic.Dictionary"
        "[System.String,System.Management.Automation.ScriptBlock]'"
    ]
    assert "$farmsyncBlocks.ContainsKey($farmsyncText)" in boot
    assert "$farmsyncBlocks.Add($farmsyncText, [ScriptBlock]::Create($farmsyncText))" in boot
    # A block is only ever made from the op script the request carries, never from args.
    assert boot.count("[ScriptBlock]::Create(") == 1
    assert "$farmsyncText = [regex]::Unescape($farmsyncScript.Groups[1].Value)" in boot
    assert "@{" in "$farmsyncBlocks = @{}" and [
        n for n in walk(tree("$farmsyncBlocks = @{}")) if n.type == "hash_literal_expression"
    ]


def loop_escapes(script: str) -> list[str]:
    """``exit``, and ``break``/``continue`` outside a loop or switch of their own function or
    script block: PowerShell looks up the call stack for a loop (about_Break), and the one it
    would find is the bootstrap's session loop."""
    found = []
    for node in walk(tree(script)):
        if node.type != "flow_control_statement":
            continue
        keyword = node.children[0].type
        if keyword == "exit":
            found.append(text(node))
        if keyword not in ("break", "continue"):
            continue
        for parent in ancestors(node):
            if parent.type in LOOPS or parent.type == "switch_statement":
                break
            if parent.type in SCOPE_EDGES:
                found.append(f"{keyword} outside a loop")
                break
        else:
            found.append(f"{keyword} outside a loop")
    return found


@pytest.mark.parametrize("name", [n for n in PS1_FILES if n != "bootstrap.ps1"])
def test_no_op_script_can_leave_the_session_loop(name: str) -> None:
    assert loop_escapes(psagent.resource_text(name)) == []


def test_the_loop_escape_rule_catches_stray_breaks() -> None:
    bad = "function F { break }\n$items | ForEach-Object { continue }\nexit 1\nif ($x) { break }\n"
    assert len(loop_escapes(bad)) == 4
    good = "foreach ($x in $y) { if ($x) { continue } }\nswitch ($a) { 'x' { break } }\n"
    assert loop_escapes(good) == []


def assigned_variables(script: str) -> set[str]:
    found = set()
    for node in walk(tree(script)):
        if node.type == "left_assignment_expression":
            found |= {text(v).lower() for v in walk(node) if v.type == "variable"}
    return found


@pytest.mark.parametrize("name", [n for n in PS1_FILES if n != "bootstrap.ps1"])
def test_op_scripts_see_nothing_of_the_bootstrap_but_the_request(name: str) -> None:
    # Variable names are case-insensitive: an op reading one of the bootstrap's would see the
    # session's state (the block cache, the last status). Only the request text is shared.
    # No scope modifiers either: $script:/$global: state would outlive the request.
    ours = {v for v in assigned_variables(psagent.BOOTSTRAP) if v.startswith("$farmsync")}
    assert {"$farmsyncblocks", "$farmsyncexit", "$farmsyncjson"} <= ours
    used = {
        text(n).lower() for n in walk(tree(psagent.resource_text(name))) if n.type == "variable"
    }
    assert used & ours <= {"$farmsyncjson"}
    assert not {v for v in used if ":" in v and not v.startswith("$env:")}


def test_warnings_and_answers_belong_to_one_request() -> None:
    common = psagent.resource_text("common.ps1")
    # Made afresh each time common.ps1 runs, i.e. once per request, in the request's scope.
    assert re.search(
        r"^\$FarmsyncWarnings = \[System\.Collections\.Generic\.List\[string\]\]::new\(\)$",
        common,
        re.M,
    )
    # Every answer line is written in one place, and flushed before the next read.
    writer = function_bodies(common)["write-farmsyncline"]
    assert "[Console]::Out.Write(" in writer and "[Console]::Out.Flush()" in writer
    every = "".join(psagent.resource_text(n) for n in PS1_FILES)
    assert every.count("[Console]::Out.") == 2
    # A request that is not JSON is a broken frame (2): the bootstrap answers nothing more.
    request = function_bodies(common)["invoke-farmsyncrequest"]
    assert request.count("return 2") == 1 and request.count("return 0") == 1
    assert request.index("ConvertFrom-FarmsyncJsonText") < request.index("return 2")
    assert request.index("return 2") < request.index("Assert-FarmsyncArguments")
    boot = psagent.BOOTSTRAP
    assert "$farmsyncLast = @(& { . $farmsyncBlock; Invoke-FarmsyncRequest })[-1]" in boot
    assert "if ($farmsyncLast -eq 2) { break }" in boot


def test_stage_commit_reads_its_word_exactly_and_reuses_the_shared_steps() -> None:
    script = psagent.resource_text("stage_commit.ps1")
    assert f"$word -cne '{protocol.COMMIT_WORD}'" in script
    assert script.count("[Console]::In.ReadLine()") == 1
    body = function_bodies(script)["invoke-farmsyncop"]
    steps = [
        "Assert-FarmsyncKeepBackups",
        "Invoke-FarmsyncStageItems",
        "Test-FarmsyncCommitReady",
        "{ armed = $true }",
        "[Console]::In.ReadLine()",
        "Invoke-FarmsyncCommitItems",
        "Read-FarmsyncState -Path $item.path -WithoutContent",
        "Invoke-FarmsyncCleanupPaths",
    ]
    at = [body.index(step) for step in steps]
    assert at == sorted(at), "stage, check, armed, word, release, verify, cleanup"
    # Abort and failed checks remove what this request staged; a failed cleanup is a warning.
    assert body.count("Remove-FarmsyncStagedFiles -Paths $written") == 2
    assert "Add-FarmsyncWarning -Text ('cleanup: ' + $info.kind + ': ' + $info.detail)" in body
    # The shared steps exist once, in common.ps1, and the ops are thin wrappers over them.
    common = function_bodies(psagent.resource_text("common.ps1"))
    for name in PS1_FILES:
        if name in ("common.ps1", "bootstrap.ps1"):
            continue
        assert not set(function_bodies(psagent.resource_text(name))) & set(common), name
    for op in ("stage", "commit", "cleanup", "read"):
        assert len(function_bodies(psagent.resource_text(f"{op}.ps1"))) == 1, op


@pytest.mark.parametrize("name", PS1_FILES)
def test_compiled_types_are_added_once_per_process(name: str) -> None:
    # A session runs an op many times in one process: Add-Type of a type that exists fails
    # ("the type name already exists"), so each definition is guarded by a lookup first.
    script = psagent.resource_text(name)
    for at in [m.start() for m in re.finditer(r"Add-Type -TypeDefinition", script)]:
        guard = re.findall(r"if \(\$null -eq \('([\w.]+)' -as \[type\]\)\) \{", script[:at])
        assert guard, f"{name}: Add-Type -TypeDefinition without a type lookup before it"
        namespace, _, type_name = guard[-1].rpartition(".")
        source = script[at : script.index("'@", at)]
        assert f"namespace {namespace}" in source and f"class {type_name}" in source
