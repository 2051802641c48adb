"""Data-driven tests over tests/webconfig/corpus: every file, its expected reading and edit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from farmsync.errors import ConfigFileError, MachineKeyError
from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import validate_key
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import inspect_config
from tests.webconfig.support import assert_only_machine_key_changed

CORPUS = Path(__file__).parent / "corpus"
V2_ROOT = "C:/Windows/Microsoft.NET/Framework64/v2.0.50727/CONFIG/web.config"
V4_ROOT = "C:/Windows/Microsoft.NET/Framework64/v4.0.30319/Config/web.config"
HEXRUN = re.compile(r"[0-9A-Fa-f]{16,}")


@dataclass(frozen=True)
class Expect:
    """What a corpus file should read as. ``error``: substring of the ConfigFileError."""

    root: str | None = None  # None, "mk" or "auto": the root key's fingerprint kind
    keys: int = 0  # machineKeys found (all scopes)
    in_location: bool = False  # the root key sits in a <location>
    app_paths: tuple[str, ...] = ()  # location paths of non-root keys
    encoding: str = "utf-8"
    bom: bool = False
    newline: str = "\n"
    encrypted: bool = False
    error: str | None = None
    error_line: int | None = None
    source: str = V4_ROOT
    key_problem: str | None = None  # validate_key on the root key raises this
    warns: str | None = None  # ... or warns this


CRLF = "\r\n"
CASES: dict[str, Expect] = {
    "01-net4-root-defaults": Expect(newline=CRLF),
    "02-net4-root-explicit-key": Expect(root="mk", keys=1, newline=CRLF),
    "03-net2-root-sha1": Expect(root="mk", keys=1, newline=CRLF, source=V2_ROOT, warns="legacy"),
    "04-app-autogenerate": Expect(
        root="auto", keys=1, newline=CRLF, source="D:/shop/web.config", warns="AutoGenerate"
    ),
    "05-bom-crlf": Expect(root="mk", keys=1, bom=True, newline=CRLF),
    "06-utf16le-bom": Expect(root="mk", keys=1, encoding="utf-16-le", bom=True, newline=CRLF),
    "07-utf16be-bom-no-key": Expect(encoding="utf-16-be", bom=True, newline=CRLF),
    "08-comments-inside-element": Expect(root="mk", keys=1),
    "09-commented-out-key": Expect(),
    "10-location-dot": Expect(root="mk", keys=1, in_location=True, newline=CRLF),
    "11-location-app-only": Expect(keys=1, app_paths=("Default Web Site/Legacy",)),
    "12-root-and-app-location": Expect(root="mk", keys=2, app_paths=("Default Web Site/Legacy",)),
    "13-multiline-single-quotes": Expect(root="mk", keys=1),
    "14-vs2005-namespace": Expect(newline=CRLF),
    "15-no-system-web": Expect(newline=CRLF),
    "16-self-closing-system-web": Expect(),
    "17-legacy-3des": Expect(root="mk", keys=1, newline=CRLF, warns="legacy"),
    "18-framework45-data-protector": Expect(root="mk", keys=1),
    "19-cdata-and-pi": Expect(),
    "20-latin1-declared": Expect(encoding="iso8859-1"),
    "21-xdt-transform": Expect(root="mk", keys=1),
    "22-encrypted-machinekey": Expect(encrypted=True, newline=CRLF),
    "23-billion-laughs": Expect(error="DOCTYPE", error_line=2),
    "24-external-entity": Expect(error="DOCTYPE", error_line=2),
    "25-external-dtd": Expect(error="DOCTYPE", error_line=2),
    "26-truncated": Expect(error="malformed", error_line=68),
    "27-duplicate-machinekey": Expect(error="same scope", error_line=6),
    "28-duplicate-root-scope": Expect(error="same scope", error_line=8),
    "29-wrong-root": Expect(error="not <configuration>", error_line=2),
    "30-not-xml": Expect(error="not well-formed", error_line=1),
    "31-undefined-entity": Expect(error="not well-formed", error_line=3),
    "32-two-system-web": Expect(error="appears twice", error_line=5),
    "33-bad-hex-key": Expect(root="mk", keys=1, key_problem="hexadecimal"),
    "34-explicit-isolateapps": Expect(root="mk", keys=1, key_problem="only be used with"),
    "35-empty": Expect(error="not well-formed", error_line=1),
    "36-utf32": Expect(error="UTF-32"),
    "37-one-line": Expect(newline=CRLF),
}


def test_the_table_covers_the_whole_corpus() -> None:
    on_disk = {p.stem for p in CORPUS.glob("*.config")}
    assert on_disk == set(CASES)
    assert len(on_disk) >= 25


def load(name: str) -> bytes:
    return (CORPUS / f"{name}.config").read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_inspect(name: str) -> None:
    expect, data = CASES[name], load(name)
    if expect.error:
        with pytest.raises(ConfigFileError) as info:
            inspect_config(data, name)
        assert expect.error in str(info.value)
        assert info.value.source == name and name in str(info.value)
        assert info.value.line == expect.error_line
        assert not HEXRUN.search(str(info.value))
        return
    found = inspect_config(data, name)
    assert (found.encoding, found.bom, found.newline) == (
        expect.encoding,
        expect.bom,
        expect.newline,
    )
    assert found.encrypted is expect.encrypted
    assert len(found.machine_keys) == expect.keys
    apps = tuple(k.location_path for k in found.machine_keys if k is not found.root_key)
    assert apps == expect.app_paths
    if expect.root is None:
        assert found.root_key is None
        return
    assert found.root_key is not None
    assert found.root_key.key.fingerprint().startswith(expect.root + "-")
    assert found.root_key.in_location is expect.in_location
    if expect.key_problem:
        with pytest.raises(MachineKeyError, match=expect.key_problem):
            validate_key(found.root_key.key, source=name, line=found.root_key.line)
    else:
        warnings = validate_key(
            found.root_key.key, "v2.0.50727" if expect.source == V2_ROOT else "v4.0.30319"
        )
        assert (expect.warns is None and not warnings) or any(
            expect.warns and expect.warns in w for w in warnings
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_edit(name: str) -> None:
    expect, data = CASES[name], load(name)
    policy = Policy(validation="SHA1") if expect.source == V2_ROOT else Policy()
    key = generate_key(policy)
    if expect.error or expect.encrypted:
        with pytest.raises(ConfigFileError) as info:
            apply_machine_key(data, key, name)
        assert key.validation_key not in str(info.value)
        assert (expect.error or "encrypted") in str(info.value)
        return
    new = apply_machine_key(data, key, expect.source)
    assert new != data
    after = inspect_config(new, name)
    assert after.root_key is not None and after.root_key.key == key
    assert after.root_key.in_location is expect.in_location
    assert_only_machine_key_changed(data, new)
    assert apply_machine_key(new, key, expect.source) == new  # idempotent, byte for byte
    # The non-root keys are untouched.
    assert [k.key for k in after.machine_keys if k is not after.root_key] == [
        k.key
        for k in inspect_config(data, name).machine_keys
        if k.location_path and k.in_location and k.location_path not in ("", ".")
    ]


def test_hmac_key_refused_in_a_v2_config() -> None:
    with pytest.raises(MachineKeyError, match="HMACSHA"):
        apply_machine_key(load("03-net2-root-sha1"), generate_key(), V2_ROOT)
