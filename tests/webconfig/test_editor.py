"""Focused editor and parser behaviour beyond the corpus."""

from __future__ import annotations

import re

import pytest

from farmsync.errors import ConfigFileError
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey
from farmsync.webconfig.diff import masked_diff
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import MAX_CONFIG_BYTES, inspect_config
from tests.webconfig.support import assert_only_machine_key_changed

KEY = generate_key()
OTHER = generate_key()


def doc(body: str, nl: str = "\n") -> bytes:
    head = f'<?xml version="1.0" encoding="utf-8"?>{nl}<configuration>{nl}'
    return f"{head}{body}</configuration>{nl}".encode()


def test_replacing_keeps_quotes_order_unknown_attributes_and_content() -> None:
    old = doc(
        "  <system.web>\n"
        "    <machineKey lockItem='true' validation='SHA1'\n"
        f"        validationKey='{OTHER.validation_key}'"
        ' compatibilityMode="Framework20SP2">\n'
        "      <!-- keep me -->\n"
        "    </machineKey>\n"
        "  </system.web>\n"
    )
    new = apply_machine_key(old, KEY, "web.config").decode()
    assert "lockItem='true' validation='HMACSHA256'" in new
    assert f"validationKey='{KEY.validation_key}'" in new
    assert "compatibilityMode" not in new  # the key has none: the attribute must go
    assert f'\n        decryptionKey="{KEY.decryption_key}"\n        decryption="AES">' in new
    assert "<!-- keep me -->\n    </machineKey>" in new
    assert_only_machine_key_changed(old, new.encode())


def test_values_are_escaped_and_read_back() -> None:
    key = MachineKey(
        KEY.validation_key,
        KEY.decryption_key,
        compatibility_mode="Framework45",
        data_protector_type="Contoso.P, Contoso",
        application_name="A & B <\"quoted\">\t'x'",
    )
    old = doc("  <system.web>\n    <machineKey applicationName='old' />\n  </system.web>\n")
    new = apply_machine_key(old, key, "web.config")
    found = inspect_config(new, "web.config").root_key
    assert found is not None and found.key == key
    assert "applicationName='A &amp; B &lt;\"quoted\"&gt;&#9;&apos;x&apos;'" in new.decode()
    assert apply_machine_key(new, key, "web.config") == new


def test_insertion_follows_indentation_and_newlines() -> None:
    old = doc('\t<system.web>\r\n\t\t<trust level="Full" />\r\n\t</system.web>\r\n', "\r\n")
    new = apply_machine_key(old, KEY, "web.config").decode()
    expected = f'\t\t<trust level="Full" />\r\n\t\t<machineKey validationKey="{KEY.validation_key}"'
    assert expected in new
    assert "\n" not in new.replace("\r\n", "")


def test_location_block_is_edited_in_place_and_reported() -> None:
    old = doc(
        '  <location path="" allowOverride="false">\n    <system.web>\n'
        f'      <machineKey validationKey="{OTHER.validation_key}" '
        f'decryptionKey="{OTHER.decryption_key}" />\n'
        "    </system.web>\n  </location>\n"
    )
    before = inspect_config(old, "web.config")
    assert before.root_key is not None and before.root_key.in_location
    assert before.root_key.location_path == "" and before.root_key.line == 5
    new = apply_machine_key(old, KEY, "web.config")
    after = inspect_config(new, "web.config")
    assert after.root_key is not None and after.root_key.key == KEY and after.root_key.in_location
    assert len(after.machine_keys) == 1


def test_encrypted_system_web_is_refused() -> None:
    old = doc(
        '  <system.web configProtectionProvider="DataProtectionConfigurationProvider">\n'
        "    <EncryptedData><CipherData><CipherValue>AQAAANCMnd8B</CipherValue>"
        "</CipherData></EncryptedData>\n  </system.web>\n"
    )
    assert inspect_config(old, "w").encrypted
    with pytest.raises(ConfigFileError, match="encrypted") as info:
        apply_machine_key(old, KEY, "w")
    assert info.value.line == 3


def test_oversized_files_are_refused_before_parsing() -> None:
    big = doc("<!--" + "x" * MAX_CONFIG_BYTES + "-->")
    with pytest.raises(ConfigFileError, match="larger than 8 MiB"):
        inspect_config(big, "big.config")


V = KEY.validation_key
SW, END = "  <system.web>\n    ", "\n  </system.web>\n"


@pytest.mark.parametrize(
    "bad",
    [
        f'{SW}<machineKey validationKey="{V}',  # truncated inside the key
        f'{SW}<machineKey validationKey="{V}" validationKey="{V}"/>{END}',  # duplicate attribute
        f'{SW}<machineKey validationKey="{V}"></machinekey>{END}',  # mismatched end tag
        f"{SW}<machineKey validationKey={V} />{END}",  # unquoted value
        f'{SW}<machineKey validationKey="{V}" />{END}<system.web/>',  # two system.web
    ],
    ids=["truncated", "duplicate-attribute", "mismatched-end-tag", "unquoted", "two-system-web"],
)
def test_errors_never_carry_key_material(bad: str) -> None:
    data = doc(bad)
    with pytest.raises(ConfigFileError) as info:
        apply_machine_key(data, KEY, "C:/inetpub/web.config")
    text = str(info.value)
    assert "C:/inetpub/web.config" in text
    assert not re.search(r"[0-9A-F]{16,}", text), text


def test_masked_diff_shows_fingerprints_not_keys() -> None:
    old = doc(
        f'  <system.web>\r\n    <machineKey validationKey="{OTHER.validation_key}" '
        f'decryptionKey="{OTHER.decryption_key}" />\r\n  </system.web>\r\n'
        '  <connectionStrings><add name="db" connectionString="Password=hunter2" />'
        "</connectionStrings>\r\n",
        "\r\n",
    )
    new = apply_machine_key(old, KEY, "web.config")
    diff = masked_diff(old, new, "web.config")
    for secret in (
        KEY.validation_key,
        KEY.decryption_key,
        OTHER.validation_key,
        OTHER.decryption_key,
        "hunter2",
    ):
        assert secret not in diff and secret[:16] not in diff
    assert diff.startswith("--- a/web.config\n+++ b/web.config\n")
    assert re.search(r'^-.*validationKey="…\(masked #[0-9a-f]{8}\)"', diff, re.M)
    assert re.search(r'^\+.*validationKey="…\(masked #[0-9a-f]{8}\)"', diff, re.M)
    assert "\r" not in diff
    assert masked_diff(new, new, "web.config") == ""


def test_masked_diff_keeps_autogenerate_readable() -> None:
    old = doc(
        '  <system.web>\n    <machineKey validationKey="AutoGenerate,IsolateApps" />\n'
        "  </system.web>\n"
    )
    diff = masked_diff(old, apply_machine_key(old, KEY, "w"), "w")
    assert '-    <machineKey validationKey="AutoGenerate,IsolateApps" />' in diff
