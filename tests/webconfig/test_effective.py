"""The effective <machineKey> along machine.config -> root web.config (with <location>) ->
application web.config, from the files in tests/webconfig/chain_corpus."""

from __future__ import annotations

from pathlib import Path

from farmsync.webconfig.effective import ConfigFacts, Source, config_facts, resolve

CORPUS = Path(__file__).parent / "chain_corpus"


def facts(name: str) -> ConfigFacts:
    return config_facts((CORPUS / name).read_bytes(), name)


def test_each_attribute_comes_from_the_level_that_set_it_last() -> None:
    machine, root, app = facts("machine.config"), facts("root.web.config"), facts("app.web.config")
    effective = resolve([(machine, ()), (root, ("Default Web Site/Shop",)), (app, ())])
    key = effective.key
    assert key.is_explicit
    assert (key.validation, key.decryption, key.compatibility_mode) == (
        "HMACSHA512",
        "Auto",
        "Framework45",
    )
    assert key.decryption_key.startswith("C3C3")  # the application overrides the root's
    assert effective.sources["validationKey"] == Source("root.web.config", 5, None)
    assert effective.sources["validation"] == Source("root.web.config", 11, "Default Web Site/shop")
    assert effective.sources["decryptionKey"] == Source("app.web.config", 5, None)
    assert effective.sources["compatibilityMode"] == Source("machine.config", 5, None)
    assert "applicationName" not in effective.sources  # the admin location is not for /shop


def test_locations_apply_to_the_path_and_below_broadest_first() -> None:
    root = facts("root.web.config")
    admin = resolve([(root, ("default web site/shop/admin",))])
    assert admin.key.validation == "HMACSHA512"  # from the /shop location, inherited below
    assert admin.key.application_name == "admin"
    assert [e.line for e in admin.elements] == [5, 11, 16]
    other = resolve([(root, ("Default Web Site/shopping",))])  # a prefix, not a parent
    assert other.key.validation == "HMACSHA256" and other.key.application_name is None


def test_without_any_key_asp_net_defaults_apply() -> None:
    effective = resolve([(facts("machine.config"), ())])
    assert not effective.key.is_explicit
    assert effective.key.validation_key == "AutoGenerate,IsolateApps"
    assert "validationKey" not in effective.sources


def test_locks_viewstate_switches_and_encryption_are_found_with_their_lines() -> None:
    root, app = facts("root.web.config"), facts("app.web.config")
    own = root.root_key()
    assert own is not None and own.locked and own.line == 5  # <location allowOverride="false">
    assert [k.locked for k in root.keys] == [True, False, False]
    assert app.keys[0].locked  # lockAttributes
    assert [(f.line, f.what) for f in root.insecure_deserialization] == [
        (20, "aspnet:AllowInsecureDeserialization=true")
    ]
    assert [f.line for f in app.viewstate_mac_off] == [4]
    encrypted = facts("encrypted.web.config")
    assert encrypted.encrypted and encrypted.encrypted_line == 3 and encrypted.keys == ()


def test_no_key_value_in_any_repr() -> None:
    root = facts("root.web.config")
    effective = resolve([(root, ())])
    for text in (repr(root), repr(effective), repr(root.keys[0])):
        assert "A1A1A1A1" not in text and "B2B2B2B2" not in text
