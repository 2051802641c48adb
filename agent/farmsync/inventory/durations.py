"""Durations written the short way: "90d", "12w", "36h", "30m", "45s", "1d12h".

Used by the policy's ``max_key_age`` and by the CLI's ``--if-older-than``. Units must appear
largest first and at most once, so "1d12h" is accepted and "12h1d" (almost always a typo) is not.
"""

from __future__ import annotations

import re
from datetime import timedelta

from farmsync.errors import InputError

_UNITS: dict[str, int] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_ORDER = "wdhms"
_PART = re.compile(r"\s*(\d+)\s*([wdhms])", re.IGNORECASE)
_EXAMPLES = 'use a number and a unit (w, d, h, m, s), e.g. "90d", "12w", "36h" or "1d12h"'


def parse_duration(text: str, *, source: str | None = None, line: int | None = None) -> timedelta:
    """Parse ``text`` into a timedelta; raise InputError (with ``source``/``line``) if malformed."""
    if not isinstance(text, str):
        raise InputError(f"duration {text!r} has no unit: {_EXAMPLES}", source=source, line=line)
    stripped = text.strip()
    if not stripped:
        raise InputError(f"empty duration: {_EXAMPLES}", source=source, line=line)
    seconds = 0
    pos = 0
    last_rank = -1
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None:
            raise InputError(f"invalid duration {text!r}: {_EXAMPLES}", source=source, line=line)
        unit = match.group(2).lower()
        rank = _ORDER.index(unit)
        if rank <= last_rank:
            raise InputError(
                f"invalid duration {text!r}: each unit at most once, largest first (w d h m s)",
                source=source,
                line=line,
            )
        last_rank = rank
        seconds += int(match.group(1)) * _UNITS[unit]
        pos = match.end()
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InputError(f"duration {text!r} is too long", source=source, line=line) from None


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for display: 1 day 12 hours -> "1d12h"; zero -> "0s"."""
    remaining = int(delta.total_seconds())
    if remaining <= 0:
        return "0s"
    parts: list[str] = []
    for unit in "dhms":  # weeks are shown as days: "14d" reads better than "2w"
        size = _UNITS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
