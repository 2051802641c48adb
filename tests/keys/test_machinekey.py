"""The machineKey model: defaults, fingerprints, ASP.NET's validation rules, masking."""

from __future__ import annotations

import pytest

from farmsync.errors import MachineKeyError
from farmsync.keys.machinekey import MachineKey, framework_of_path, validate_key

V64 = "0123456789ABCDEF" * 8  # 64 bytes
D32 = "FEDCBA9876543210" * 4  # 32 bytes


def key(**overrides: str | None) -> MachineKey:
    attrs = {"validation_key": V64, "decryption_key": D32}
    attrs.update(overrides)  # type: ignore[arg-type]
    return MachineKey(**attrs)  # type: ignore[arg-type]


def test_fingerprint_is_stable_across_releases() -> None:
    # A frozen vector: changing the canonical form would orphan every recorded fingerprint
    # (key history, audit reports), so this value must never change.
    assert key().fingerprint() == "mk-acb5d75f0a6dc117"
    assert key().fingerprint() == key().fingerprint()


def test_fingerprint_ignores_order_case_and_omitted_defaults() -> None:
    a = MachineKey.from_attributes(
        {
            "validationKey": V64,
            "decryptionKey": D32,
            "validation": "HMACSHA256",
            "decryption": "AES",
        }
    )
    b = MachineKey.from_attributes(
        {
            "decryption": "aes",
            "validation": "hmacsha256",
            "decryptionKey": D32.lower(),
            "validationKey": V64.lower(),
            "compatibilityMode": "Framework20SP1",
            "dataProtectorType": "",
            "applicationName": "",
        }
    )
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() == key().fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"validation_key": "1" + V64[1:]},
        {"decryption_key": "1" + D32[1:]},
        {"validation": "HMACSHA512"},
        {"decryption": "Auto"},
        {"compatibility_mode": "Framework45"},
        {"data_protector_type": "X, Y", "application_name": "shop"},
    ],
)
def test_fingerprint_covers_the_whole_effective_element(change: dict[str, str]) -> None:
    assert key(**change).fingerprint() != key().fingerprint()


def test_fingerprint_shape_and_autogenerate_prefix() -> None:
    fp = key().fingerprint()
    assert fp.startswith("mk-") and len(fp) == 19 and int(fp[3:], 16) >= 0
    auto = MachineKey.from_attributes({})
    assert auto.fingerprint().startswith("auto-")
    assert not auto.is_explicit and key().is_explicit
    half = key(decryption_key="AutoGenerate,IsolateApps")
    assert half.fingerprint().startswith("auto-") and not half.is_explicit


def test_from_attributes_fills_aspnet_defaults() -> None:
    k = MachineKey.from_attributes({})
    assert k.validation_key == k.decryption_key == "AutoGenerate,IsolateApps"
    assert (k.validation, k.decryption) == ("HMACSHA256", "Auto")
    assert k.compatibility_mode is None and k.data_protector_type is None


def test_attributes_are_canonical_order_and_omit_unset() -> None:
    assert list(key().attributes()) == [
        "validationKey",
        "decryptionKey",
        "validation",
        "decryption",
    ]
    full = key(compatibility_mode="Framework45", data_protector_type="P, A", application_name="app")
    assert list(full.attributes())[4:] == [
        "compatibilityMode",
        "dataProtectorType",
        "applicationName",
    ]
    assert MachineKey.from_attributes(full.attributes()) == full


def test_repr_and_str_never_show_keys() -> None:
    k = key()
    for text in (repr(k), str(k), f"{k}", repr([k])):
        assert V64 not in text and D32 not in text
        assert V64[:16] not in text and D32[:16] not in text
        assert k.fingerprint() in text


@pytest.mark.parametrize(
    ("overrides", "framework", "message"),
    [
        ({"validation_key": V64[:-1] + "G"}, "v4.0.30319", "hexadecimal"),
        ({"validation_key": V64[:-1]}, "v4.0.30319", "even number"),
        ({"validation_key": V64[:40]}, "v4.0.30319", "HMACSHA256 needs 64-256"),
        ({"validation_key": V64 * 3}, "v4.0.30319", "HMACSHA256 needs"),
        ({"validation": "HMACSHA512", "validation_key": V64[:64]}, "v4.0.30319", "HMACSHA512"),
        ({"decryption_key": D32[:40]}, "v4.0.30319", "AES needs 32/48/64"),
        ({"decryption": "DES", "decryption_key": D32}, "v4.0.30319", "DES needs 16"),
        ({"decryption": "3DES", "decryption_key": D32}, "v4.0.30319", "3DES needs 32/48"),
        ({"validation": "SHA3"}, "v4.0.30319", "unknown validation"),
        ({"decryption": "Blowfish"}, "v4.0.30319", "unknown decryption"),
        ({"validation_key": V64 + ",IsolateApps"}, "v4.0.30319", "only be used with AutoGenerate"),
        ({"validation_key": "AutoGenerate,IsolateEverything"}, "v4.0.30319", "AutoGenerate form"),
        (
            {"validation_key": "AutoGenerate,IsolateApps,IsolateApps"},
            "v4.0.30319",
            "AutoGenerate form",
        ),
        ({"compatibility_mode": "Framework35"}, "v4.0.30319", "compatibilityMode"),
        (
            {"data_protector_type": "Contoso.Protector, Contoso"},
            "v4.0.30319",
            "requires applicationName",
        ),
        ({}, "v2.0.50727", "HMACSHA"),
        ({"validation": "SHA1", "compatibility_mode": "Framework45"}, "v2.0.50727", "Framework45"),
        (
            {"validation": "SHA1", "data_protector_type": "P, A", "application_name": "a"},
            "v2.0.50727",
            "dataProtectorType",
        ),
    ],
)
def test_invalid_keys_are_rejected_without_leaking_them(
    overrides: dict[str, str], framework: str, message: str
) -> None:
    k = key(**overrides)
    with pytest.raises(MachineKeyError) as info:
        validate_key(k, framework, source="web.config", line=7)
    text = str(info.value)
    assert message in text
    assert info.value.source == "web.config" and info.value.line == 7
    assert V64[:16] not in text and D32[:16] not in text


@pytest.mark.parametrize(
    ("overrides", "framework", "warning"),
    [
        ({}, "v4.0.30319", None),
        ({"validation": "HMACSHA384", "validation_key": V64 * 2}, "v4.0.30319", None),
        ({"validation": "SHA1"}, "v2.0.50727", "legacy"),
        ({"validation": "MD5"}, "v4.0.30319", "legacy"),
        ({"validation": "AES"}, "v4.0.30319", "legacy"),
        ({"decryption": "3DES", "decryption_key": D32[:48]}, "v4.0.30319", "legacy"),
        ({"decryption": "Auto", "decryption_key": D32[:16]}, "v4.0.30319", None),
        (
            {"validation_key": "AutoGenerate,IsolateApps,IsolateByAppId"},
            "v4.0.30319",
            "AutoGenerate",
        ),
        ({"validation_key": "AutoGenerate, IsolateApps"}, "v4.0.30319", "spaces"),
        (
            {
                "compatibility_mode": "Framework45",
                "data_protector_type": "P, A",
                "application_name": "shop",
            },
            "v4.0.30319",
            None,
        ),
    ],
)
def test_valid_keys_pass_with_warnings(
    overrides: dict[str, str], framework: str, warning: str | None
) -> None:
    warnings = validate_key(key(**overrides), framework)
    if warning is None:
        assert warnings == []
    else:
        assert any(warning in w for w in warnings), warnings


def test_new_keys_refuse_weak_algorithms_and_autogenerate_unless_forced() -> None:
    md5 = key(validation="MD5")
    with pytest.raises(MachineKeyError, match="too weak"):
        validate_key(md5, new_key=True)
    assert any("legacy" in w for w in validate_key(md5, new_key=True, force=True))
    des = key(decryption="DES", decryption_key=D32[:16])
    with pytest.raises(MachineKeyError, match="too weak"):
        validate_key(des, new_key=True)
    validate_key(des, new_key=True, force=True)
    with pytest.raises(MachineKeyError, match="explicit"):
        validate_key(key(decryption_key="AutoGenerate"), new_key=True, force=True)
    # An existing farm's SHA1 key is accepted (with a warning), even as a new key.
    assert validate_key(key(validation="SHA1"), new_key=True)


def test_framework_of_path() -> None:
    assert (
        framework_of_path(r"C:\Windows\Microsoft.NET\Framework64\v2.0.50727\CONFIG\web.config")
        == "v2.0.50727"
    )
    assert (
        framework_of_path("/c/Windows/Microsoft.NET/Framework/v4.0.30319/Config/web.config")
        == "v4.0.30319"
    )
    assert framework_of_path(r"D:\sites\shop\web.config") == "v4.0.30319"
