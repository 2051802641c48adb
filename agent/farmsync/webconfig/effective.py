"""The effective <machineKey> of an application, resolved along ASP.NET's inheritance chain.

machine.config -> root web.config (its own key, then the ``<location path=...>`` elements that
target the site or application) -> the application's web.config. Each level overrides the
attributes it sets and inherits the others, so the result says, per attribute, which file and
line it came from (or that it is ASP.NET's default).

Also the other facts of one config file the audit needs: whether the key is locked against
overrides, whether system.web is encrypted, whether the ViewState MAC is turned off. Pure
functions over bytes; nothing here ever puts an attribute value into a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lxml import etree

from farmsync.keys.machinekey import MANAGED_ATTRIBUTES, MachineKey
from farmsync.webconfig.parser import parse_config

INSECURE_DESERIALIZATION = "aspnet:allowinsecuredeserialization"
_LOCK_ATTRIBUTES = ("lockAttributes", "lockAllAttributesExcept", "lockItem")


@dataclass(frozen=True)
class KeyElement:
    """One <machineKey> element as written. ``attributes`` may hold key material."""

    source: str
    line: int
    scope: str  # "" for the whole file's level; else the <location path> normalised
    location_path: str | None  # as written, when inside <location>
    attributes: Mapping[str, str] = field(repr=False)
    locked: bool = False  # applications below cannot override it

    @property
    def key(self) -> MachineKey:
        return MachineKey.from_attributes(self.attributes)

    @property
    def sets_keys(self) -> bool:
        return "validationKey" in self.attributes or "decryptionKey" in self.attributes


@dataclass(frozen=True)
class Finding:
    """A line of a config file that matters to the audit (no values)."""

    source: str
    line: int
    what: str


@dataclass(frozen=True)
class ConfigFacts:
    source: str
    keys: tuple[KeyElement, ...]
    encrypted_line: int | None = None
    viewstate_mac_off: tuple[Finding, ...] = ()  # enableViewStateMac="false"
    insecure_deserialization: tuple[Finding, ...] = ()  # aspnet:AllowInsecureDeserialization

    @property
    def encrypted(self) -> bool:
        return self.encrypted_line is not None

    def root_key(self) -> KeyElement | None:
        return next((k for k in self.keys if k.scope == ""), None)


def line_of(el: etree._Element) -> int:
    line = el.sourceline
    return line if isinstance(line, int) else 0


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _kids(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def normalise_location(path: str | None) -> str:
    """A <location path> as a comparable scope: "Site/Shop/" -> "site/shop"."""
    norm = (path or "").strip().replace("\\", "/").strip("/")
    return "" if norm in ("", ".") else norm.lower()


def _denies_override(location: etree._Element | None) -> bool:
    if location is None:
        return False
    return (location.get("allowOverride") or "").lower() == "false" or (
        location.get("overrideMode") or ""
    ).lower() == "deny"


def config_facts(data: bytes, source: str) -> ConfigFacts:
    """What one config file says about keys and ViewState. Raises ConfigFileError."""
    parsed = parse_config(data, source)
    root = parsed.document
    assert root is not None
    # The scanner's line is where the start tag begins (lxml gives where a long tag ends).
    start_line = {id(loc.element): loc.found.line for loc in parsed.located}
    keys: list[KeyElement] = []
    mac_off: list[Finding] = []
    insecure: list[Finding] = []
    scopes: list[tuple[etree._Element, etree._Element | None]] = [(root, None)]
    scopes += [(loc, loc) for loc in _kids(root, "location")]
    for container, location in scopes:
        path = location.get("path") if location is not None else None
        for system_web in _kids(container, "system.web"):
            for element in _kids(system_web, "machineKey"):
                if element.get("configProtectionProvider") is not None:
                    continue  # encrypted: reported through encrypted_line
                attrs = {
                    str(k): str(v)
                    for k, v in element.attrib.items()
                    if str(k) in MANAGED_ATTRIBUTES
                }
                locked = _denies_override(location) or any(element.get(a) for a in _LOCK_ATTRIBUTES)
                keys.append(
                    KeyElement(
                        source,
                        start_line.get(id(element), line_of(element)),
                        normalise_location(path) if location is not None else "",
                        path if location is not None else None,
                        attrs,
                        locked,
                    )
                )
            for pages in _kids(system_web, "pages"):
                if (pages.get("enableViewStateMac") or "").strip().lower() == "false":
                    line = line_of(pages)
                    mac_off.append(Finding(source, line, 'enableViewStateMac="false"'))
        for settings in _kids(container, "appSettings"):
            for add in _kids(settings, "add"):
                name = (add.get("key") or "").strip().lower()
                value = (add.get("value") or "").strip().lower()
                if name == INSECURE_DESERIALIZATION and value == "true":
                    line = line_of(add)
                    what = "aspnet:AllowInsecureDeserialization=true"
                    insecure.append(Finding(source, line, what))
    return ConfigFacts(
        source,
        tuple(keys),
        parsed.encrypted_line,
        tuple(mac_off),
        tuple(insecure),
    )


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Source:
    """Where one attribute of the effective key was set."""

    path: str
    line: int
    location_path: str | None = None


@dataclass(frozen=True)
class EffectiveKey:
    """The key an application really uses. ``key`` is key material: never print it."""

    key: MachineKey = field(repr=False)
    sources: Mapping[str, Source]  # attribute -> where it was set; absent: ASP.NET's default
    elements: tuple[KeyElement, ...]  # every element that took part, in inheritance order

    def source_of(self, attribute: str) -> Source | None:
        return self.sources.get(attribute)


def applies_to(scope: str, targets: Sequence[str]) -> bool:
    """A <location> scope applies to a target path and everything below it."""
    return any(t == scope or t.startswith(scope + "/") for t in targets)


def chain_elements(levels: Sequence[tuple[ConfigFacts, Sequence[str]]]) -> list[KeyElement]:
    """The elements that apply, in order: per level its own key, then matching locations
    from the broadest to the most specific."""
    out: list[KeyElement] = []
    for facts, targets in levels:
        wanted = [normalise_location(t) for t in targets]
        own = facts.root_key()
        if own is not None:
            out.append(own)
        located = [k for k in facts.keys if k.scope and applies_to(k.scope, wanted)]
        out += sorted(located, key=lambda k: len(k.scope))
    return out


def resolve(levels: Sequence[tuple[ConfigFacts, Sequence[str]]]) -> EffectiveKey:
    """Merge the chain: ``levels`` from machine.config down, each with the location paths
    (``"Default Web Site/shop"``) that target the application at that level."""
    merged: dict[str, str] = {}
    sources: dict[str, Source] = {}
    elements = chain_elements(levels)
    for element in elements:
        for name, value in element.attributes.items():
            merged[name] = value
            sources[name] = Source(element.source, element.line, element.location_path)
    return EffectiveKey(MachineKey.from_attributes(merged), sources, tuple(elements))
