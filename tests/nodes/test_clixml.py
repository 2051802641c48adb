"""PowerShell's CLIXML stderr, from recorded samples, turned into readable text."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.nodes import psagent
from farmsync.nodes.clixml import decode_stderr

DATA = Path(__file__).parent / "data"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_error_strings_are_joined_and_unescaped() -> None:
    text = decode_stderr(sample("clixml-method-error.txt"))
    lines = text.splitlines()
    assert lines[0].startswith('Exception calling "ReadAllBytes" with "1" argument(s)')
    assert "'C:\\Windows\\Microsoft.NET\\Framework64" in lines[0]  # _x0027_ is a quote
    assert lines[1] == "At line:12 char:5"
    assert "FullyQualifiedErrorId : UnauthorizedAccessException" in text
    assert "_x000D_" not in text and "<S" not in text and "Preparing modules" not in text


def test_progress_only_is_empty_and_several_documents_are_read() -> None:
    assert decode_stderr(sample("clixml-progress-only.txt")) == ""
    text = decode_stderr(sample("clixml-two-documents.txt"))
    assert text == (
        "Program 'powershell.exe' failed to run: This program is blocked by group policy. "
        "For more information, contact your system administrator"
    )


@pytest.mark.parametrize(
    "data",
    [b"plain text from cmd.exe\r\n", b"", "d\u00e9j\u00e0".encode(), b"#< CLIXML\r\n<in >x<?y>"],
)
def test_anything_else_is_text_and_broken_clixml_does_not_raise(data: bytes) -> None:
    assert isinstance(decode_stderr(data), str)
    assert decode_stderr(b"plain\n") == "plain\n"


def test_a_failed_agent_reports_the_decoded_first_error_line() -> None:
    with pytest.raises(NodeError) as info:
        psagent.parse_output(
            b"", host="web1", phase="read", stderr=sample("clixml-two-documents.txt")
        )
    assert info.value.kind is NodeErrorKind.PROTOCOL
    assert "stderr: Program 'powershell.exe' failed to run" in info.value.detail
    assert "CLIXML" not in info.value.detail and "_x000D_" not in info.value.detail


def test_a_bootstrap_failure_line_becomes_a_clear_node_error() -> None:
    # What bootstrap.ps1 prints on a shell below the floor (its catch block's format).
    line = (
        b'{"ok":false,"error":{"kind":"remote-error","detail":"agent bootstrap failed at check '
        b'the shell: Windows PowerShell 5.1 or later is required (PowerShell 4.0, FullLanguage)",'
        b'"path":null}}\r\n'
    )
    with pytest.raises(NodeError) as info:
        psagent.parse_output(line, host="web1", phase="stage")
    assert info.value.kind is NodeErrorKind.REMOTE
    assert "PowerShell 4.0" in info.value.detail and "5.1 or later" in info.value.detail
