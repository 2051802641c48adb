"""The farm marker as bytes: written before <configuration> in the file's own encoding and
newlines, replaced (never duplicated), read back, always a well-formed comment."""

from __future__ import annotations

import codecs

import pytest

from farmsync.orchestration.marker import Marker, read_marker, with_marker, without_marker
from farmsync.webconfig.parser import inspect_config

BODY = (
    '<?xml version="1.0" encoding="{enc}"?>\r\n<!-- a comment -->\r\n'
    "<configuration>\r\n  <system.web />\r\n</configuration>\r\n"
)
STAMP = Marker(
    "farm-a",
    "f1",
    7,
    "mk-0123456789abcdef",
    "20261127T000000Z-abc--def",
    "v1",
    "ctl:/s/farm-a/vault.fsv",
)


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE)],
)
def test_written_in_the_files_encoding_and_read_back(encoding: str, bom: bytes) -> None:
    original = bom + BODY.format(enc="utf-16" if "16" in encoding else "utf-8").encode(encoding)

    marked = with_marker(original, STAMP, "n:/web.config")

    assert marked.startswith(bom)
    assert read_marker(marked, "n") == STAMP
    text = marked[len(bom) :].decode(encoding)
    assert "\r\n<!-- farmsync-marker: {" in text and text.index("farmsync-marker") < text.index(
        "<configuration>"
    )
    assert text.count("\r\n") == BODY.count("\r\n") + 1  # one CRLF line more, nothing else
    inspect_config(marked, "n")  # well-formed: "--" inside the run id is escaped


def test_a_second_marker_replaces_the_first() -> None:
    original = BODY.format(enc="utf-8").encode()
    once = with_marker(original, STAMP, "n")
    newer = Marker("farm-a", "f1", 8, "mk-fedcba9876543210", "R2", "v1", "ctl:/x")

    twice = with_marker(once, newer, "n")

    assert twice.count(b"farmsync-marker") == 1
    assert read_marker(twice, "n") == newer
    assert without_marker(twice) == original


def test_no_marker_reads_as_none() -> None:
    assert read_marker(BODY.format(enc="utf-8").encode(), "n") is None
    assert read_marker(b"not xml at all", "n") is None
