"""Property tests: over random surrounding documents, an edit touches only the element."""

from __future__ import annotations

import codecs
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import MachineKey
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import FoundMachineKey, inspect_config
from tests.webconfig.support import assert_only_machine_key_changed

# Kept small for the suite's time budget; FARMSYNC_HYPOTHESIS_EXAMPLES=2000 for a deep run.
EXAMPLES = int(os.environ.get("FARMSYNC_HYPOTHESIS_EXAMPLES", "70"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

safe_text = st.text(alphabet=st.sampled_from("abc XYZ 019 é€\t_.:;=/\"'"), max_size=20)
comments = safe_text.map(lambda t: f"<!--{t}-->")
siblings = st.one_of(
    st.just('<compilation debug="true" targetFramework="4.8" />'),
    st.just("<httpRuntime enableVersionHeader='false'/>"),
    st.just('<add key="a&amp;b" value="&lt;machineKey validationKey=&quot;x&quot;/&gt;" />'),
    st.just("<pages>\n<namespaces><![CDATA[<machineKey />]]></namespaces></pages>"),
    st.just("<?farmsync ignore?>"),
    comments,
    comments.map(lambda c: c.replace("<!--", "<!-- <machineKey decryption='DES'/> ")),
)
spacing = st.sampled_from([" ", "  ", "\n      ", "\t"])


@st.composite
def hex_key(draw: st.DrawFn, size: int) -> str:
    value = draw(st.binary(min_size=size, max_size=size)).hex()
    return value.upper() if draw(st.booleans()) else value


@st.composite
def machine_key_element(draw: st.DrawFn) -> str:
    attrs = []
    if draw(st.booleans()):
        attrs.append(
            (
                "validationKey",
                draw(
                    st.one_of(
                        hex_key(64), st.sampled_from(["AutoGenerate", "AutoGenerate,IsolateApps"])
                    )
                ),
            )
        )
    if draw(st.booleans()):
        attrs.append(("decryptionKey", draw(hex_key(32))))
    for name, values in (
        ("validation", ["SHA1", "HMACSHA256", "hmacsha512"]),
        ("decryption", ["AES", "Auto", "3DES"]),
        ("compatibilityMode", ["Framework20SP2", "Framework45"]),
        ("lockItem", ["true"]),
        ("applicationName", ["", "shop & co"]),
    ):
        if draw(st.booleans()):
            attrs.append((name, draw(st.sampled_from(values)).replace("&", "&amp;")))
    attrs = draw(st.permutations(attrs))
    quote = draw(st.sampled_from(['"', "'"]))
    text = "<machineKey" + "".join(f"{draw(spacing)}{n}={quote}{v}{quote}" for n, v in attrs)
    if draw(st.booleans()):
        return text + draw(st.sampled_from(["/>", " />", "\n    />"]))
    return text + ">" + draw(st.sampled_from(["", "<!-- note -->", "\n  "])) + "</machineKey>"


@st.composite
def web_config(draw: st.DrawFn) -> tuple[bytes, str]:
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    unit = draw(st.sampled_from(["  ", "    ", "\t"]))

    def block(depth: int, items: list[str]) -> str:
        return "".join(nl + unit * depth + item for item in items)

    def system_web(depth: int, key: bool) -> str:
        children = draw(st.lists(siblings, max_size=3))
        if key:
            children.insert(draw(st.integers(0, len(children))), draw(machine_key_element()))
        if not children and draw(st.booleans()):
            return "<system.web />"
        return "<system.web>" + block(depth + 1, children) + nl + unit * depth + "</system.web>"

    shape = draw(st.sampled_from(["direct", "location-root", "none", "no-system-web"]))
    top: list[str] = draw(
        st.lists(
            st.sampled_from(["<appSettings />", "<connectionStrings>\n</connectionStrings>"]),
            max_size=2,
        )
    )
    if shape != "no-system-web":
        top.append(system_web(1, shape == "direct"))
    if shape == "location-root":
        top.append(
            f'<location path="{draw(st.sampled_from(["", "."]))}">'
            + nl
            + unit * 2
            + system_web(2, True)
            + nl
            + unit
            + "</location>"
        )
    if draw(st.booleans()):
        top.append(
            '<location path="Default Web Site/App">'
            + nl
            + unit * 2
            + system_web(2, True)
            + nl
            + unit
            + "</location>"
        )
    top = draw(st.permutations(top))
    head = '<?xml version="1.0" encoding="utf-8"?>' + nl if draw(st.booleans()) else ""
    head += draw(st.sampled_from(["", "<!-- root web.config -->" + nl]))
    text = head + "<configuration>" + block(1, top) + nl + "</configuration>"
    text += draw(st.sampled_from(["", nl, nl + "<!-- end -->" + nl]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-bom", "utf-16-le"]))
    if encoding == "utf-8-bom":
        return codecs.BOM_UTF8 + text.encode(), encoding
    if encoding == "utf-16-le":
        return codecs.BOM_UTF16_LE + text.encode("utf-16-le"), encoding
    return text.encode(), encoding


@st.composite
def keys(draw: st.DrawFn) -> MachineKey:
    pool = draw(st.binary(min_size=256, max_size=256))
    offset = [0]

    def randbytes(n: int) -> bytes:
        chunk = pool[offset[0] : offset[0] + n]
        offset[0] += n
        return chunk

    policy = Policy(
        validation=draw(st.sampled_from(["HMACSHA256", "HMACSHA512", "SHA1"])),
        decryption=draw(st.sampled_from(["AES", "3DES", "Auto"])),
        compatibility_mode=draw(st.sampled_from([None, "Framework45"])),
    )
    return generate_key(policy, randbytes=randbytes)


@SETTINGS
@given(web_config(), keys())
def test_edit_touches_only_the_element_and_is_idempotent(
    doc: tuple[bytes, str], key: MachineKey
) -> None:
    data, _ = doc
    before = inspect_config(data, "web.config")
    new = apply_machine_key(data, key, "web.config")
    assert_only_machine_key_changed(data, new)
    after = inspect_config(new, "web.config")
    assert after.root_key is not None and after.root_key.key == key
    assert after.root_key.in_location == (
        before.root_key is not None and before.root_key.in_location
    )

    def others(found: list[FoundMachineKey], root: FoundMachineKey | None) -> list[object]:
        return [(k.key, k.location_path, k.in_location) for k in found if k is not root]

    assert others(list(after.machine_keys), after.root_key) == others(
        list(before.machine_keys), before.root_key
    )
    assert apply_machine_key(new, key, "web.config") == new


@SETTINGS
@given(web_config(), keys(), keys())
def test_second_key_replaces_first_in_place(
    doc: tuple[bytes, str], first: MachineKey, second: MachineKey
) -> None:
    data, _ = doc
    once = apply_machine_key(data, first, "web.config")
    twice = apply_machine_key(once, second, "web.config")
    assert_only_machine_key_changed(once, twice)  # once has a root key: an in-place rewrite
    was = inspect_config(once, "web.config").root_key
    found = inspect_config(twice, "web.config").root_key
    assert was is not None and found is not None
    assert found.key == second and found.line == was.line
