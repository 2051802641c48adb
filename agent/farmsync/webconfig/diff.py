"""A unified diff of two web.config versions that is safe to print.

Key values become a short mask naming a fingerprint of the value; other values that look
like secrets (long hex runs, passwords, connection strings) are masked outright, because
the diff's context lines can show any part of the file.
"""

from __future__ import annotations

import difflib
import hashlib
import re

from farmsync.errors import ConfigFileError
from farmsync.keys.machinekey import is_auto_generate
from farmsync.webconfig.parser import decode_config

_KEY_ATTR = re.compile(r"""\b(validationKey|decryptionKey)(\s*=\s*)(["'])(.*?)\3""", re.DOTALL)
_SECRET_ATTR = re.compile(
    r"""\b([\w.:-]*(?:password|pwd|secret|connectionString)[\w.:-]*)(\s*=\s*)(["'])(.*?)\3""",
    re.IGNORECASE | re.DOTALL,
)
_HEXRUN = re.compile(r"\b[0-9A-Fa-f]{32,}\b")


def mask_value(value: str) -> str:
    """A key value as it may be shown: AutoGenerate forms as-is, anything else masked."""
    if is_auto_generate(value):
        return value
    digest = hashlib.sha256(value.strip().upper().encode("utf-8")).hexdigest()[:8]
    return f"\u2026(masked #{digest})"


def mask_text(text: str) -> str:
    """``text`` with every key value, secret-looking attribute and long hex run masked."""
    text = _KEY_ATTR.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{mask_value(m[4])}{m[3]}", text)
    text = _SECRET_ATTR.sub(lambda m: f"{m[1]}{m[2]}{m[3]}\u2026(masked){m[3]}", text)
    return _HEXRUN.sub("\u2026(masked hex)", text)


def _decode(data: bytes, source: str) -> str:
    try:
        return decode_config(data, source).text
    except ConfigFileError:
        return data.decode("utf-8", "replace")


def masked_diff(old: bytes, new: bytes, source: str) -> str:
    """Unified diff of ``old`` -> ``new`` (decoded text, masked); "" when they are equal."""
    if old == new:
        return ""
    before = mask_text(_decode(old, source)).splitlines()
    after = mask_text(_decode(new, source)).splitlines()
    lines = difflib.unified_diff(before, after, f"a/{source}", f"b/{source}", lineterm="")
    return "\n".join(lines)
