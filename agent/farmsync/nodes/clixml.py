"""Readable text from a PowerShell stderr stream that arrives as CLIXML.

powershell.exe started with redirected output writes its error stream as serialized objects:
a ``#< CLIXML`` line, then ``<Objs>`` documents whose ``<S S="Error">`` strings are the error
lines, with control characters escaped as ``_xHHHH_`` (``_x000D__x000A_`` is CR LF).
Progress records and other streams are dropped. Parsing follows the project's XML rules:
no entities, no DTD, no network.
"""

from __future__ import annotations

import re

from lxml import etree

MARKER = b"#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True
)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def decode_stderr(data: bytes) -> str:
    """``data`` as text: CLIXML error strings joined, anything else decoded as UTF-8."""
    stripped = data.lstrip(b"\xef\xbb\xbf \r\n")
    if not stripped.startswith(MARKER):
        return data.decode("utf-8", "replace")
    body = stripped[len(MARKER) :]
    lines: list[str] = []
    # One <Objs> document per write: wrap them so they parse as one.
    documents = re.sub(rb"<\?xml[^>]*\?>", b"", body.replace(MARKER, b""))
    try:
        root = etree.fromstring(b"<farmsync>" + documents + b"</farmsync>", _PARSER)
    except etree.XMLSyntaxError:
        return "unreadable CLIXML on stderr"
    if root is None:
        return "unreadable CLIXML on stderr"
    for element in root.iter("{*}S"):
        if element.get("S") == "Error" and element.text:
            lines.append(_unescape(element.text))
    text = "".join(lines)
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
