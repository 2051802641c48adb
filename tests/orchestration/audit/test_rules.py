"""One test per audit rule: the finding appears where it should, with its id, severity, place
and action, and not on a clean farm. Pure: models are built from file contents."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from farmsync.keys.disclosed import DisclosedKeys
from farmsync.nodes.auditread import RsaContainer
from farmsync.orchestration.audit.model import Expected, KeyStatus, NodeModel, Severity
from farmsync.orchestration.audit.rules import RULES, evaluate
from tests.orchestration.audit.support import (
    APP,
    NOW,
    ROOT,
    UNREADABLE,
    config,
    farm_of,
    findings,
    hexkey,
    host,
    machine_key,
    model,
    node,
)

V, D = hexkey(64), hexkey(32)
GOOD = machine_key(V, D, validation="HMACSHA256", decryption="AES")


def clean(*names: str) -> list:  # type: ignore[type-arg]
    return farm_of(dict.fromkeys(names or ("a", "b", "c"), GOOD))


def test_a_consistent_farm_has_only_the_unlocked_root_findings() -> None:
    m = model(*clean())
    assert {f.id for f in evaluate(m)} == {"root-key-unlocked"}
    locked = [node(host(n), {ROOT.format(host=n): config(key=GOOD, lock=True)}) for n in "ab"]
    assert evaluate(model(*locked)) == []


def test_disclosed_key() -> None:
    text = f"{V},{D}\n"
    disclosed = DisclosedKeys.parse_plain(text, "mine")
    m = model(*clean(), disclosed=disclosed)
    found = findings("disclosed-key", m)
    assert [(f.host, f.severity, f.line) for f in found] == [
        ("a", Severity.CRITICAL, 4),
        ("b", Severity.CRITICAL, 4),
        ("c", Severity.CRITICAL, 4),
    ]
    assert "both keys are publicly disclosed" in found[0].message
    assert V not in found[0].message and "rotate" in found[0].action
    assert findings("disclosed-key", model(*clean(), disclosed=DisclosedKeys.bundled())) == []


def test_disclosed_key_in_a_location_element_is_found_too() -> None:
    body = (
        '<?xml version="1.0"?><configuration><location path="Site/app"><system.web>'
        f"{machine_key(V, D)}</system.web></location></configuration>"
    )
    n = node(host("a"), {ROOT.format(host="a"): body})
    found = findings("disclosed-key", model(n, disclosed=DisclosedKeys.parse_plain(f",{D}", "x")))
    assert len(found) == 1 and "location path='Site/app'" in found[0].message


def test_viewstate_mac_disabled() -> None:
    app = APP.format(host="a")
    bad = node(
        host("a", apps=(app,)),
        {
            ROOT.format(host="a"): config(key=GOOD),
            app: config('<pages enableViewStateMac="false" />'),
        },
        registry={"64": 0, "32": None},
    )
    found = findings("viewstate-mac-disabled", model(bad, *clean("b")))
    assert [(f.host, f.path, f.severity) for f in found] == [
        ("a", r"HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319", Severity.CRITICAL),
        ("a", app, Severity.CRITICAL),
    ]
    settings = config().replace(
        b"<system.web>",
        b'<appSettings><add key="aspnet:AllowInsecureDeserialization" value="True"/>'
        b"</appSettings><system.web>",
    )
    other = node(host("b"), {ROOT.format(host="b"): settings})
    assert len(findings("viewstate-mac-disabled", model(other))) == 1


def test_key_drift_against_the_journal_or_the_majority() -> None:
    nodes = farm_of({"a": GOOD, "b": GOOD, "c": machine_key(hexkey(64), hexkey(32))})
    majority = findings("key-drift", model(*nodes))
    assert [(f.host, f.severity) for f in majority] == [("c", Severity.HIGH)]
    assert "the farm majority" in majority[0].message and "farmsync sync" in majority[0].action
    journal = Expected(nodes[2].scopes[0].state.identity, "journal", "run-7", NOW)
    by_journal = findings("key-drift", model(*nodes, expected=journal))
    assert [f.host for f in by_journal] == ["a", "b"]
    assert "journal's last run run-7" in by_journal[0].message
    split = farm_of({"a": GOOD, "b": machine_key(hexkey(64), hexkey(32))})
    assert [f.host for f in findings("key-drift", model(*split))] == ["a", "b"]  # no majority


def test_application_override() -> None:
    app = APP.format(host="a")
    own = machine_key(hexkey(64), hexkey(32))
    n = node(
        host("a", apps=(app,)), {ROOT.format(host="a"): config(key=GOOD), app: config(key=own)}
    )
    found = findings("application-override", model(n, *clean("b")))
    assert [(f.host, f.path, f.line, f.application) for f in found] == [("a", app, 4, app)]
    assert "validationKey" in found[0].message
    same = node(host("a", apps=(app,)), {ROOT.format(host="a"): config(key=GOOD), app: config()})
    assert findings("application-override", model(same)) == []


def test_autogenerate_in_farm() -> None:
    auto = node(host("a"), {ROOT.format(host="a"): config()})
    found = findings("autogenerate-in-farm", model(auto, *clean("b")))
    assert [(f.host, f.severity) for f in found] == [("a", Severity.HIGH)]
    assert auto.scopes[0].state.identity == "auto:a"  # per node, never one shared fingerprint
    assert findings("autogenerate-in-farm", model(auto)) == []  # one node: not a farm problem
    isolated = node(
        host("b"),
        {
            ROOT.format(host="b"): config(
                key='<machineKey validationKey="AutoGenerate,IsolateApps" />'
            )
        },
    )
    assert "IsolateApps" in findings("autogenerate-in-farm", model(auto, isolated))[1].message


def test_attribute_mismatch() -> None:
    other = machine_key(
        V, D, validation="HMACSHA256", decryption="AES", compatibilityMode="Framework20SP2"
    )
    nodes = farm_of({"a": GOOD, "b": GOOD, "c": other})
    found = findings("attribute-mismatch", model(*nodes))
    assert [(f.host, f.line) for f in found] == [("c", 4)]
    assert "compatibilityMode=Framework20SP2 while most of the farm has " in found[0].message


def test_bitness_mismatch() -> None:
    f32 = r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config"
    f64 = r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config"
    h = host("w", windows=True, roots=(f32, f64))
    n = node(h, {f32: config(key=GOOD), f64: config(key=machine_key(hexkey(64), hexkey(32)))})
    found = findings("bitness-mismatch", model(n))
    assert [(f.host, f.path) for f in found] == [("w", f32)]
    same = node(h, {f32: config(key=GOOD), f64: config(key=GOOD)})
    assert findings("bitness-mismatch", model(same)) == []


def test_rsa_container_mismatch() -> None:
    ok = {
        "iisConfigurationKey": RsaContainer("ok", "rsa-1111"),
        "iisWasKey": RsaContainer("ok", "rsa-2"),
    }
    odd = {
        "iisConfigurationKey": RsaContainer("ok", "rsa-9999"),
        "iisWasKey": RsaContainer("missing", error="no such key container"),
    }
    nodes = [node(host(n, windows=True), {}, rsa=r) for n, r in (("a", ok), ("b", ok), ("c", odd))]
    found = findings("rsa-container-mismatch", model(*nodes))
    assert [(f.host, f.path) for f in found] == [("c", "iisConfigurationKey"), ("c", "iisWasKey")]
    assert "aspnet_regiis" in found[0].action


def test_unreadable_config() -> None:
    n = node(host("a"), {ROOT.format(host="a"): UNREADABLE})
    found = findings("unreadable-config", model(n))
    assert [(f.host, f.severity) for f in found] == [("a", Severity.HIGH)]
    assert n.root_scopes()[0].state.status is KeyStatus.UNREADABLE  # unknown, never clean
    broken = node(host("b"), {ROOT.format(host="b"): b"<configuration><system.web>"})
    assert findings("unreadable-config", model(broken))[0].message.startswith(
        "root web.config is malformed"
    )


def test_weak_algorithm() -> None:
    weak = machine_key(hexkey(20), hexkey(24), validation="SHA1", decryption="3DES")
    found = findings("weak-algorithm", model(*farm_of({"a": weak})))
    assert {f.message for f in found} == {
        "validation=SHA1 is weak or legacy",
        "decryption=3DES is weak",
        "validationKey has only 20 bytes",
    }
    assert all(f.controls == ("CIS IIS 10 3.9", "DISA STIG V-218807") for f in found)
    assert findings("weak-algorithm", model(*clean())) == []


def test_key_too_old() -> None:
    nodes = clean()
    identity = nodes[0].scopes[0].state.identity
    old = Expected(identity, "journal", "run-1", NOW - timedelta(days=120))
    found = findings("key-too-old", model(*nodes, expected=old, max_age=90))
    assert len(found) == 1 and found[0].host is None and "120d" in found[0].message
    fresh = Expected(identity, "journal", "run-1", NOW - timedelta(days=10))
    assert findings("key-too-old", model(*nodes, expected=fresh, max_age=90)) == []


def test_root_key_unlocked() -> None:
    found = findings("root-key-unlocked", model(*clean("a")))
    assert [(f.host, f.line, f.severity) for f in found] == [("a", 4, Severity.MEDIUM)]
    locked = node(host("a"), {ROOT.format(host="a"): config(key=GOOD, lock=True)})
    assert findings("root-key-unlocked", model(locked)) == []


def test_old_keys_in_backups_and_stale_staging_files() -> None:
    path = ROOT.format(host="a")
    names = (
        "web.config.farmsync-r1.bak",
        "web.config.farmsync-r2.bak",
        "web.config.farmsync-r3.new",
    )
    n = node(host("a"), {path: config(key=GOOD)}, leftovers={path: names})
    backups = findings("old-keys-in-backups", model(n))
    assert [(f.path, f.message) for f in backups] == [
        (path, "2 farmsync backup(s) beside this file hold earlier keys")
    ]
    staging = findings("stale-staging-file", model(n))
    assert [f.severity for f in staging] == [Severity.LOW]
    assert "farmsync-r3.new" in staging[0].message and "recover" in staging[0].action


def test_subfolder_machinekey() -> None:
    app = APP.format(host="a")
    below = app.replace("web.config", "sub/web.config")
    n = node(
        host("a", apps=(app,)),
        {ROOT.format(host="a"): config(key=GOOD), app: config(), below: config(key=GOOD)},
        subfolders={app.rsplit("/", 1)[0]: (below,)},
    )
    found = findings("subfolder-machinekey", model(n))
    assert [(f.path, f.line, f.severity) for f in found] == [(below, 4, Severity.LOW)]


def test_encrypted_section() -> None:
    encrypted = (
        b'<?xml version="1.0"?>\n<configuration>\n<system.web configProtectionProvider="Rsa">'
        b"<EncryptedData/></system.web>\n</configuration>\n"
    )
    n = node(host("a"), {ROOT.format(host="a"): encrypted})
    found = findings("encrypted-section", model(n))
    assert [(f.line, f.severity) for f in found] == [(3, Severity.INFO)]
    assert n.root_scopes()[0].state.status is KeyStatus.ENCRYPTED
    assert n.root_scopes()[0].state.identity is None  # counts as unknown, not as a key


def test_windows_facts_unavailable() -> None:
    n = node(host("w", windows=True), {}, facts_error="registry: SecurityException")
    found = findings("windows-facts-unavailable", model(n))
    assert [(f.host, f.severity) for f in found] == [("w", Severity.INFO)]


def test_every_rule_has_a_test_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for rule_id in RULES:
        assert f'"{rule_id}"' in source, f"rule {rule_id} has no test"


def test_findings_are_worst_first() -> None:
    n = node(host("a"), {ROOT.format(host="a"): config()}, registry={"64": 0, "32": None})
    severities = [f.severity.rank for f in evaluate(model(n, *clean("b")))]
    assert severities == sorted(severities) and severities[0] == 0


def test_an_application_restating_the_farm_key_is_not_an_override() -> None:
    app = APP.format(host="a")
    n = node(
        host("a", apps=(app,)), {ROOT.format(host="a"): config(key=GOOD), app: config(key=GOOD)}
    )
    assert findings("application-override", model(n)) == []


def test_marker_mismatch() -> None:
    from farmsync.keys.machinekey import MachineKey
    from farmsync.orchestration.marker import Marker, with_marker

    good_fp = MachineKey.from_attributes(
        {"validationKey": V, "decryptionKey": D, "validation": "HMACSHA256", "decryption": "AES"}
    ).fingerprint()

    def marked(name: str, vault_id: str, fingerprint: str, key: str = GOOD) -> NodeModel:
        path = ROOT.format(host=name)
        stamp = Marker("f", "farm1", 2, fingerprint, "R1", vault_id, f"ctl:/{vault_id}")
        return node(host(name), {path: with_marker(config(key=key), stamp, path)})

    one_vault = model(marked("a", "v1", good_fp), marked("b", "v1", good_fp))
    assert findings("marker-mismatch", one_vault) == []

    two = model(marked("a", "v1", good_fp), marked("b", "v2", good_fp))
    two_vaults = findings("marker-mismatch", two)
    assert [(f.host, f.severity) for f in two_vaults] == [(None, Severity.MEDIUM)]
    assert "v1, v2" in two_vaults[0].message and "--adopt" in two_vaults[0].action

    edited = findings("marker-mismatch", model(marked("a", "v1", "mk-0000000000000000")))
    assert [(f.host, f.path) for f in edited] == [("a", ROOT.format(host="a"))]
    assert "changed outside farmsync" in edited[0].message
