"""Short durations for max_key_age and --if-older-than."""

from __future__ import annotations

from datetime import timedelta

import pytest

from farmsync.errors import InputError
from farmsync.inventory.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12w", timedelta(weeks=12)),
        ("36h", timedelta(hours=36)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w3d4h5m6s", timedelta(weeks=2, days=3, hours=4, minutes=5, seconds=6)),
        (" 1d 12h ", timedelta(days=1, hours=12)),
        ("90D", timedelta(days=90)),
        ("0s", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("90", "invalid duration"),
        ("", "empty duration"),
        ("d", "invalid duration"),
        ("1.5d", "invalid duration"),
        ("-3d", "invalid duration"),
        ("12h1d", "largest first"),
        ("1d1d", "largest first"),
        ("3 months", "invalid duration"),
        ("99999999999w", "too long"),
    ],
)
def test_bad(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_duration(text, source="--if-older-than")
    assert fragment in caught.value.message
    assert caught.value.source == "--if-older-than"


@pytest.mark.parametrize("text", ["90d", "1d12h", "4h5m6s", "0s"])
def test_format_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
