"""keygen output formats: each renders something its consumer can parse."""

from __future__ import annotations

import json
import shlex

import pytest
import tree_sitter_powershell
from lxml import etree
from tree_sitter import Language, Node, Parser

from farmsync.errors import MachineKeyError
from farmsync.keys.formats import render_key
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey

KEY = generate_key()
TRICKY = MachineKey(
    KEY.validation_key,
    KEY.decryption_key,
    "HMACSHA512",
    "AES",
    "Framework45",
    "Contoso.Protector, Contoso",
    'O\'Brien & "Sons" <1>',
)


@pytest.mark.parametrize("key", [KEY, TRICKY])
def test_xml_parses_and_round_trips(key: MachineKey) -> None:
    text = render_key(key, "xml")
    element = etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))
    assert element.tag == "machineKey"
    assert MachineKey.from_attributes(dict(element.attrib)) == key
    assert list(element.attrib) == list(key.attributes())


def test_xml_looks_like_the_classic_generators() -> None:
    text = render_key(KEY, "xml")
    assert text == (
        f'<machineKey validationKey="{KEY.validation_key}" '
        f'decryptionKey="{KEY.decryption_key}" validation="HMACSHA256" '
        'decryption="AES" />'
    )


def test_json_round_trips() -> None:
    data = json.loads(render_key(TRICKY, "json"))
    assert data["fingerprint"] == TRICKY.fingerprint()
    assert MachineKey.from_attributes(data["machineKey"]) == TRICKY


def test_appcmd_targets_both_root_web_configs() -> None:
    lines = [line for line in render_key(KEY, "appcmd").splitlines() if not line.startswith("rem ")]
    assert [line.split(" ", 1)[0] for line in lines] == [
        r"%windir%\system32\inetsrv\appcmd.exe",
        r"%windir%\SysWOW64\inetsrv\appcmd.exe",
    ]
    for line in lines:
        words = shlex.split(line.replace("\\", "/"))
        assert words[0].endswith("appcmd.exe") and words[1:3] == ["set", "config"]
        assert "/commit:WEBROOT" in words and "/section:machineKey" in words
        args = dict(w[1:].split(":", 1) for w in words[3:])
        assert (
            MachineKey.from_attributes(
                {k: v for k, v in args.items() if k not in ("commit", "section")}
            )
            == KEY
        )


def test_appcmd_quotes_spaces_and_refuses_cmd_metacharacters() -> None:
    spaced = MachineKey(
        KEY.validation_key, KEY.decryption_key, data_protector_type="P, A", application_name="shop"
    )
    assert '"/dataProtectorType:P, A"' in render_key(spaced, "appcmd")
    for bad in ("50%", 'say "hi"', "bang!"):
        hostile = MachineKey(KEY.validation_key, KEY.decryption_key, application_name=bad)
        with pytest.raises(MachineKeyError) as info:
            render_key(hostile, "appcmd")
        assert KEY.validation_key not in str(info.value)


def _ps_strings(node: Node) -> list[str]:
    found: list[str] = []
    if node.type == "verbatim_string_characters":
        raw = node.text.decode() if node.text else ""
        found.append(raw[1:-1].replace("''", "'"))
    for child in node.children:
        found += _ps_strings(child)
    return found


@pytest.mark.parametrize("key", [KEY, TRICKY])
def test_powershell_parses_and_carries_every_attribute(key: MachineKey) -> None:
    text = render_key(key, "powershell")
    tree = Parser(Language(tree_sitter_powershell.language())).parse(text.encode())
    assert not tree.root_node.has_error, text
    strings = _ps_strings(tree.root_node)
    for name, value in key.attributes().items():
        assert name in strings and value in strings
    assert text.count("Set-WebConfigurationProperty -PSPath 'MACHINE/WEBROOT'") == len(
        key.attributes()
    )


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render_key(KEY, "yaml")  # type: ignore[arg-type]
