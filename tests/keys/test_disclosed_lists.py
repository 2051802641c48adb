"""--known-keys files: Microsoft's CSV format or plain VALIDATIONKEY,DECRYPTIONKEY lines;
errors name the line, never a value."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.keys.generate import generate_key


def test_plain_lines_and_the_csv_format_say_the_same() -> None:
    key = generate_key()
    plain = DisclosedKeys.parse_plain(
        f"# leaked\n\n{key.validation_key},{key.decryption_key.lower()}\n", "plain"
    )
    digest = [
        hashlib.sha256(v.upper().encode()).hexdigest()
        for v in (key.validation_key, key.decryption_key)
    ]
    csv = DisclosedKeys.parse(f"validationKey,decryptionKey\n{digest[0]},{digest[1]}\n", "csv")
    assert plain.check(key) == csv.check(key) == "both"
    assert len(plain) == len(csv) == 1


def test_one_half_only(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "half.txt"
    path.write_text(f",{key.decryption_key}\n")
    assert DisclosedKeys.load_any(path).check(key) == "decryption"


def test_load_any_tells_the_formats_apart_and_merges(tmp_path: Path) -> None:
    key = generate_key()
    empty = hashlib.sha256(b"").hexdigest()
    digest = hashlib.sha256(key.validation_key.encode()).hexdigest()
    csv = tmp_path / "ms.csv"
    csv.write_text(f"validationKey,decryptionKey\n{digest},{empty}\n")
    merged = DisclosedKeys.bundled().merged(DisclosedKeys.load_any(csv))
    assert merged.check(key) == "validation"
    assert len(merged) == len(DisclosedKeys.bundled()) + 1


@pytest.mark.parametrize("line", ["nothex,AB", "AB,CD,EF", ",", "ABC"])
def test_bad_lines_name_the_line_and_no_value(line: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"# ok\n{line}\n")
    with pytest.raises(InputError) as info:
        DisclosedKeys.load_any(path)
    assert info.value.line == 2 and info.value.source == str(path)
    assert info.value.message == "expected VALIDATIONKEY,DECRYPTIONKEY in hexadecimal"
