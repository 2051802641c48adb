"""``farmsync keygen``: the one command that prints key material, in four pasteable formats."""

from __future__ import annotations

import json
import re

from lxml import etree

from farmsync.keys.machinekey import MachineKey
from tests.cli.clikit import base_env, error_lines, output_of, run_cli

HEX = re.compile(r"^[0-9A-F]+$")


def keygen(*args: str) -> tuple[int, str, str]:
    result = run_cli("keygen", *args, env=base_env())
    return result.returncode, result.stdout, result.stderr


def parse_element(text: str) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    element = etree.fromstring(text.strip().encode(), parser)
    assert element.tag == "machineKey"
    return element


def attributes(element: etree._Element) -> dict[str, str]:
    return {str(name): str(value) for name, value in element.attrib.items()}


def xml_key(text: str) -> MachineKey:
    return MachineKey.from_attributes(attributes(parse_element(text)))


def test_xml_is_one_element_with_the_default_algorithms_and_key_lengths() -> None:
    code, out, err = keygen()
    assert code == 0, err
    key = xml_key(out)
    assert (key.validation, key.decryption) == ("HMACSHA256", "AES")
    assert HEX.match(key.validation_key) and len(key.validation_key) == 128
    assert HEX.match(key.decryption_key) and len(key.decryption_key) == 64
    # Element -> MachineKey -> attributes gives back exactly the element's attributes.
    assert key.attributes() == attributes(parse_element(out))


def test_json_carries_the_key_and_its_fingerprint_and_differs_from_run_to_run() -> None:
    first, second = keygen("--format", "json"), keygen("--format", "json")
    docs = []
    for code, out, err in (first, second):
        assert code == 0, err
        docs.append(json.loads(out))
    for doc in docs:
        key = MachineKey.from_attributes(doc["machineKey"])
        assert doc["fingerprint"] == key.fingerprint()
        assert len(key.validation_key) == 128 and len(key.decryption_key) == 64
    a, b = (doc["machineKey"] for doc in docs)
    assert a["validationKey"] != b["validationKey"]
    assert a["decryptionKey"] != b["decryptionKey"]


def test_appcmd_sets_both_root_web_configs_each_line_saying_which() -> None:
    code, out, err = keygen("--format", "appcmd")
    assert code == 0, err
    comment64, line64, comment32, line32 = out.strip().splitlines()
    # 64-bit appcmd -> Framework64's root web.config; SysWOW64's -> Framework's (32-bit pools)
    assert line64.startswith(r"%windir%\system32\inetsrv\appcmd.exe set config ")
    assert line32.startswith(r"%windir%\SysWOW64\inetsrv\appcmd.exe set config ")
    assert comment64.startswith("rem ") and r"Framework64\v4.0.30319\CONFIG\web.config" in comment64
    assert comment32.startswith("rem ") and r"Framework\v4.0.30319\CONFIG\web.config" in comment32
    assert line64.split(" ", 1)[1] == line32.split(" ", 1)[1]  # the same key into both
    for line in (line64, line32):
        assert "/commit:WEBROOT" in line and "/section:machineKey" in line
        args = dict(re.findall(r"/(\w+):(\S+)", line))
        assert HEX.match(args["validationKey"]) and len(args["validationKey"]) == 128
        assert HEX.match(args["decryptionKey"]) and len(args["decryptionKey"]) == 64
        assert (args["validation"], args["decryption"]) == ("HMACSHA256", "AES")


def test_powershell_sets_both_bitnesses_each_line_saying_which_file() -> None:
    code, out, err = keygen("--format", "powershell")
    assert code == 0, err
    sets = re.findall(
        r"^Set-WebConfigurationProperty -PSPath 'MACHINE/WEBROOT' "
        r"-Filter 'system.web/machineKey' -Name '(\w+)' -Value '([^']*)'  # sets (.*)$",
        out,
        re.MULTILINE,
    )
    values = {name: value for name, value, _ in sets}
    assert set(values) == {"validationKey", "decryptionKey", "validation", "decryption"}
    assert all(r"Framework64\v4.0.30319\CONFIG\web.config (64-bit" in f for _, _, f in sets)
    assert "if (-not [Environment]::Is64BitProcess)" in out  # else MACHINE/WEBROOT is 32-bit
    (wow,) = [line for line in out.splitlines() if "SysWOW64" in line]
    assert wow.startswith(r'& "$env:windir\SysWOW64\inetsrv\appcmd.exe" set config ')
    assert r"# sets %windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config (32-bit" in wow
    assert dict(re.findall(r"'/(\w+):([^']*)'", wow)) == values
    key = MachineKey.from_attributes(values)
    assert len(key.validation_key) == 128 and len(key.decryption_key) == 64
    # The comment names the key by the fingerprint of exactly these values.
    assert f"# machineKey {key.fingerprint()} " in out


def test_hmacsha512_gets_a_256_hex_validation_key() -> None:
    code, out, err = keygen("--validation", "HMACSHA512")
    assert code == 0, err
    key = xml_key(out)
    assert key.validation == "HMACSHA512"
    assert HEX.match(key.validation_key) and len(key.validation_key) == 256


def test_md5_is_refused_with_one_clear_message_unless_forced() -> None:
    refused = run_cli("keygen", "--validation", "MD5", env=base_env())
    assert refused.returncode == 2, output_of(refused)
    assert refused.stdout == ""
    lines = error_lines(refused)
    assert len(lines) == 1, output_of(refused)
    assert "MD5" in lines[0] and "too weak" in lines[0] and "--force" in lines[0]
    assert "Traceback" not in refused.stderr

    code, out, err = keygen("--validation", "MD5", "--force")
    assert code == 0, err
    assert xml_key(out).validation == "MD5"
