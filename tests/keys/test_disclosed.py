"""The disclosed-keys list: Microsoft's real data, and a small list we control."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.keys.disclosed import DisclosedKeys
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey

DATA_DIR = Path(__file__).resolve().parents[2] / "agent" / "farmsync" / "keys" / "data"

# The sample pair from Microsoft's "How To: Configure MachineKey in ASP.NET 2.0": published,
# copied into production by many sites, and therefore on the disclosed list.
MSDN_VALIDATION = (
    "21F090935F6E49C2C797F69BBAAD8402ABD2EE0B667A8B44EA7DD4374267A75D"
    "7AD972A119482D15A4127461DB1DC347C1A63AE5F1CCFAACFF1B72A7F0A281B"
)
MSDN_DECRYPTION = "ABAA84D7EC4BB56D75D217CECFFB9628809BDB8BF91CFCD64568A145BE59719F"
EMPTY = hashlib.sha256(b"").hexdigest()


def sha(value: str) -> str:
    return hashlib.sha256(value.upper().encode()).hexdigest()


@pytest.fixture(scope="module")
def ms_list() -> DisclosedKeys:
    return DisclosedKeys.bundled()


def test_microsofts_list_loads(ms_list: DisclosedKeys) -> None:
    assert len(ms_list) == 3713
    assert ms_list == DisclosedKeys.load(DATA_DIR / "ms-disclosed-machinekeys-sha256.csv")
    assert EMPTY not in ms_list.validation_hashes | ms_list.decryption_hashes


def test_a_published_sample_key_is_flagged(ms_list: DisclosedKeys) -> None:
    k = MachineKey(MSDN_VALIDATION, MSDN_DECRYPTION, "SHA1", "AES")
    assert ms_list.check(k) == "both"
    lower = MachineKey(MSDN_VALIDATION.lower(), MSDN_DECRYPTION.lower(), "SHA1", "AES")
    assert ms_list.check(lower) == "both"
    fresh = generate_key()
    assert ms_list.check(MachineKey(MSDN_VALIDATION, fresh.decryption_key)) == "validation"
    assert ms_list.check(MachineKey(fresh.validation_key, MSDN_DECRYPTION)) == "decryption"
    assert ms_list.check(fresh) is None


def test_small_list_with_half_disclosed_rows(tmp_path: Path) -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    csv = tmp_path / "keys.csv"
    csv.write_text(
        "validationKey, decryptionKey\n"
        f"{sha(a.validation_key)}, {EMPTY}\n"
        f"{EMPTY}, {sha(b.decryption_key)}\n"
        f"{sha(c.validation_key)}, {sha(c.decryption_key)}\n\n"
    )
    disclosed = DisclosedKeys.load(csv)
    assert len(disclosed) == 3
    assert disclosed.check(a) == "validation"
    assert disclosed.check(b) == "decryption"
    assert disclosed.check(c) == "both"
    assert disclosed.check(generate_key()) is None
    # AutoGenerate never matches, even against a list holding hash("") rows.
    assert disclosed.check(MachineKey.from_attributes({})) is None


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("key,value\n", 1),
        ("", 1),
        (f"validationKey, decryptionKey\n{EMPTY}\n", 2),
        (f"validationKey, decryptionKey\n{EMPTY}, {EMPTY}\n{EMPTY}, nothex\n", 3),
    ],
)
def test_malformed_lists_name_file_and_line(tmp_path: Path, content: str, line: int) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(InputError) as info:
        DisclosedKeys.load(csv)
    assert info.value.source == str(csv) and info.value.line == line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        DisclosedKeys.load(tmp_path / "absent.csv")


def test_bundled_list_carries_its_cc_by_attribution() -> None:
    notice = (DATA_DIR / "NOTICE.md").read_text()
    for required in (
        "Microsoft Threat Intelligence",
        "microsoft/mstic",
        "RapidReleaseTI/MachineKeys.csv",
        "creativecommons.org/licenses/by/4.0",
        "unchanged",
    ):
        assert required in notice
