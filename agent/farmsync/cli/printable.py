"""Text from an inventory or a node, made safe to print on a terminal.

Host names, paths and a node's own error messages are data, not instructions to the terminal:
an ESC starts a CSI or OSC sequence (colours, cursor moves, window titles, hyperlinks), BEL
rings, CR rewrites the line, a newline forges a progress line of its own, and the bidi
controls reorder what is shown. Every such character is printed as a visible escape
(``\\x1b``, ``\\n``, ``\\u202e``), so what the operator reads is what the data holds. JSON
output needs none of this: ``json.dumps`` escapes control characters itself.

Use :func:`printable` for plain text and :func:`markup` where rich reads markup.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the line and paragraph separators, and the bidi marks, embeddings,
# overrides and isolates (the "Trojan Source" characters).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every terminal control character shown as an escape."""
    return _UNSAFE.sub(_shown, str(text))


def printable_lines(text: object) -> str:
    """Like :func:`printable`, keeping line breaks (for text made of lines, such as a diff)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def markup(text: object) -> str:
    """``text`` made printable and escaped for rich, which would read ``[...]`` as markup."""
    from rich.markup import escape  # rich loads only for what it prints, not for `--help`

    return escape(printable(text))
