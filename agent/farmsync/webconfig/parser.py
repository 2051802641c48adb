"""Reading a web.config safely and finding its effective <machineKey>.

Two passes over the same decoded text: a hardened lxml parse proves the document is
well-formed and gives attribute values, and a small scanner gives each element's exact
character span so the editor can splice without re-serialising (which would disturb
quoting, attribute order and whitespace elsewhere). Both walk elements in document order,
so the n-th element of one is the n-th of the other.

Nothing here puts file content into an error message: messages name the file and line.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from farmsync.errors import ConfigFileError
from farmsync.keys.machinekey import MachineKey

if TYPE_CHECKING:  # lxml is imported where a document is parsed: `farmsync --help` never is
    from lxml import etree

MAX_CONFIG_BYTES = 8 * 1024 * 1024
CONFIG_NAMESPACES = (None, "http://schemas.microsoft.com/.NetConfiguration/v2.0")

_BOMS = (
    (codecs.BOM_UTF32_LE, None),  # checked before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECLARED = re.compile(rb"""^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DECLARATION = re.compile(r"^<\?xml\s[^>]*\?>")
_NAME = re.compile(r"[^\s/>=]+")
_ATTR = re.compile(r"""(\s+)([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_TAG_END = re.compile(r"\s*(/?)>")
_HEXRUN = re.compile(r"[0-9A-Fa-f]{16,}")


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # Python codec name: utf-8, utf-16-le, utf-16-be, ...
    bom: bytes
    newline: str


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def detect_newline(text: str) -> str:
    """The file's line ending: that of its first line (CRLF when the file has none)."""
    lf = text.find("\n")
    if lf < 0:
        return "\r" if "\r" in text else "\r\n"
    return "\r\n" if lf > 0 and text[lf - 1] == "\r" else "\n"


def decode_config(data: bytes, source: str) -> Decoded:
    """Decode web.config bytes the way an XML reader would: BOM, then declaration, then UTF-8."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(
            f"file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; refusing to parse",
            source=source,
        )
    encoding: str | None = "utf-8"
    bom = b""
    for mark, name in _BOMS:
        if data.startswith(mark):
            if name is None:
                raise ConfigFileError("UTF-32 web.config files are not supported", source=source)
            encoding, bom = name, mark
            break
    else:
        if data[:2] == b"<\x00":
            encoding = "utf-16-le"
        elif data[:2] == b"\x00<":
            encoding = "utf-16-be"
        elif (declared := _DECLARED.match(data)) is not None:
            encoding = _single_byte_codec(declared.group(1).decode("ascii"), source)
    assert encoding is not None
    body = data[len(bom) :]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(f"not valid {encoding} text", source=source, line=line) from None
    return Decoded(text, encoding, bom, detect_newline(text))


def _single_byte_codec(declared: str, source: str) -> str:
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        raise ConfigFileError(
            f"unknown encoding {declared[:40]!r}", source=source, line=1
        ) from None
    if "utf-16" in name or "utf-32" in name:
        raise ConfigFileError(
            f"declared {declared[:40]!r} but the file has no byte-order mark", source=source, line=1
        )
    if "<?xml".encode(name, "replace") != b"<?xml":
        raise ConfigFileError(f"unsupported encoding {declared[:40]!r}", source=source, line=1)
    return "utf-8" if name == "utf-8" else name


# --------------------------------------------------------------------------- scanning


@dataclass
class Attr:
    name: str
    start: int  # of the whitespace before the name
    name_start: int
    value_start: int  # first character inside the quotes
    value_end: int
    quote: str


@dataclass
class Tag:
    """One element's position in the text: start tag [start, head_end), element [start, end)."""

    name: str
    start: int
    head_end: int
    self_closing: bool
    attrs: list[Attr]
    close_start: int = -1  # start of "</name>" (head_end when self-closing)
    end: int = -1

    @property
    def attrs_end(self) -> int:
        """Where the last attribute ends (or the name, with no attributes)."""
        return self.attrs[-1].value_end + 1 if self.attrs else self.start + 1 + len(self.name)


def _scan_error(source: str, text: str, offset: int, message: str) -> ConfigFileError:
    return ConfigFileError(message, source=source, line=_line_of(text, offset))


def scan_tags(text: str, source: str) -> list[Tag]:
    """Every element's span, in document order. Refuses DTDs outright."""
    tags: list[Tag] = []
    stack: list[Tag] = []
    i = 0
    while (j := text.find("<", i)) >= 0:
        for opener, closer, what in (
            ("<!--", "-->", "comment"),
            ("<![CDATA[", "]]>", "CDATA"),
            ("<?", "?>", "processing instruction"),
        ):
            if text.startswith(opener, j):
                k = text.find(closer, j + len(opener))
                if k < 0:
                    raise _scan_error(source, text, j, f"unterminated {what}")
                i = k + len(closer)
                break
        else:
            if text.startswith("<!", j):
                if text[j : j + 9].upper() == "<!DOCTYPE":
                    raise _scan_error(
                        source,
                        text,
                        j,
                        "a DOCTYPE/DTD is not allowed in a "
                        "web.config (entity expansion risk); refusing to parse",
                    )
                raise _scan_error(source, text, j, "malformed markup declaration")
            if text.startswith("</", j):
                k = text.find(">", j)
                if k < 0 or not stack:
                    raise _scan_error(source, text, j, "malformed end tag")
                tag = stack.pop()
                tag.close_start, tag.end = j, k + 1
                i = k + 1
            else:
                i = _scan_start_tag(text, j, source, tags, stack)
    if stack:
        raise _scan_error(source, text, stack[-1].start, "element is not closed (truncated?)")
    return tags


def _scan_start_tag(text: str, j: int, source: str, tags: list[Tag], stack: list[Tag]) -> int:
    name = _NAME.match(text, j + 1)
    if name is None:
        raise _scan_error(source, text, j, "malformed start tag")
    attrs: list[Attr] = []
    p = name.end()
    while (m := _ATTR.match(text, p)) is not None:
        quote_at = m.start(3) - 1 if m.group(3) is not None else m.start(4) - 1
        attrs.append(
            Attr(m.group(2), m.start(), m.start(2), quote_at + 1, m.end() - 1, text[quote_at])
        )
        p = m.end()
    end = _TAG_END.match(text, p)
    if end is None:
        raise _scan_error(source, text, j, "malformed start tag")
    tag = Tag(name.group(), j, end.end(), bool(end.group(1)), attrs)
    tags.append(tag)
    if tag.self_closing:
        tag.close_start = tag.end = tag.head_end
    else:
        stack.append(tag)
    return end.end()


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class FoundMachineKey:
    key: MachineKey
    location_path: str | None  # the <location path=...> as written; None outside a location
    in_location: bool
    line: int


@dataclass(frozen=True)
class ConfigInspection:
    """What a web.config says about machineKey.

    ``root_key`` applies to the whole server/application; None means ASP.NET's defaults
    (AutoGenerate). When ``encrypted`` is True the protected section's key is unknown:
    it is not in ``machine_keys`` and must not be overwritten.
    """

    source: str
    machine_keys: tuple[FoundMachineKey, ...]
    root_key: FoundMachineKey | None
    encrypted: bool
    encoding: str
    bom: bool
    newline: str
    encrypted_line: int | None = None


@dataclass
class Located:
    found: FoundMachineKey
    tag: Tag
    element: etree._Element
    scope: str  # normalised location path; "" for the whole server/application


@dataclass
class ParsedConfig:
    """Everything the editor needs: decoded text, spans and the effective machineKeys."""

    source: str
    decoded: Decoded
    root: Tag
    system_web: Tag | None  # configuration/system.web directly (not inside <location>)
    located: list[Located] = field(default_factory=list)
    encrypted_line: int | None = None
    document: etree._Element | None = field(default=None, repr=False)  # the parsed tree

    @property
    def root_key(self) -> Located | None:
        return next((loc for loc in self.located if loc.scope == ""), None)

    def inspection(self) -> ConfigInspection:
        root = self.root_key
        return ConfigInspection(
            source=self.source,
            machine_keys=tuple(loc.found for loc in self.located),
            root_key=root.found if root else None,
            encrypted=self.encrypted_line is not None,
            encoding=self.decoded.encoding,
            bom=bool(self.decoded.bom),
            newline=self.decoded.newline,
            encrypted_line=self.encrypted_line,
        )


def _hardened_parser() -> etree.XMLParser:
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        collect_ids=False,
    )


def _safe_reason(message: str) -> str:
    """libxml2's message without anything that could be key material."""
    return _HEXRUN.sub("...", message.splitlines()[0] if message else "syntax error")[:120]


def _local(el: etree._Element) -> str:
    from lxml import etree

    return etree.QName(el).localname


def _children(el: etree._Element, name: str, namespace: str | None) -> list[etree._Element]:
    from lxml import etree

    return [
        c
        for c in el
        if isinstance(c.tag, str) and _local(c) == name and etree.QName(c).namespace == namespace
    ]


def _is_encrypted(el: etree._Element) -> bool:
    return el.get("configProtectionProvider") is not None or any(
        isinstance(c.tag, str) and _local(c) == "EncryptedData" for c in el
    )


def _scope_of(path: str | None) -> str:
    norm = (path or "").strip().replace("\\", "/").strip("/")
    return "" if norm in ("", ".") else norm.lower()


def parse_config(data: bytes, source: str) -> ParsedConfig:
    """Decode, scan and parse; raise ConfigFileError for anything unsafe or ambiguous."""
    from lxml import etree

    decoded = decode_config(data, source)
    text = decoded.text
    tags = scan_tags(text, source)
    # lxml refuses str input with an encoding declaration: blank it, keeping offsets and lines.
    decl = _DECLARATION.match(text)
    body = text if decl is None else " " * decl.end() + text[decl.end() :]
    try:
        root = etree.fromstring(body, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise ConfigFileError(
            f"not well-formed XML: {_safe_reason(exc.msg)}", source=source, line=exc.lineno
        ) from None
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.public_id:
        raise ConfigFileError("a DOCTYPE is not allowed in a web.config", source=source)
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    if len(elements) != len(tags) or any(
        _local(el) != t.name.rpartition(":")[2] for el, t in zip(elements, tags, strict=True)
    ):
        raise ConfigFileError("could not locate elements reliably; refusing to edit", source=source)
    tag_of = {id(el): t for el, t in zip(elements, tags, strict=True)}
    namespace = etree.QName(root).namespace
    if _local(root) != "configuration" or namespace not in CONFIG_NAMESPACES:
        raise ConfigFileError(
            "root element is not <configuration>", source=source, line=_line_of(text, tags[0].start)
        )

    parsed = ParsedConfig(source, decoded, tags[0], None, document=root)
    direct = _children(root, "system.web", namespace)
    if len(direct) > 1:
        raise ConfigFileError(
            "<system.web> appears twice under <configuration>",
            source=source,
            line=_line_of(text, tag_of[id(direct[1])].start),
        )
    if direct:
        parsed.system_web = tag_of[id(direct[0])]
    scopes: list[tuple[etree._Element, str | None, bool]] = [(sw, None, False) for sw in direct]
    for location in _children(root, "location", namespace):
        path = location.get("path")
        scopes += [(sw, path, True) for sw in _children(location, "system.web", namespace)]

    seen: dict[str, Located] = {}
    for system_web, path, in_location in scopes:
        if _is_encrypted(system_web) and parsed.encrypted_line is None:
            parsed.encrypted_line = _line_of(text, tag_of[id(system_web)].start)
        for element in _children(system_web, "machineKey", namespace):
            tag = tag_of[id(element)]
            line = _line_of(text, tag.start)
            if _is_encrypted(element):
                parsed.encrypted_line = parsed.encrypted_line or line
                continue
            attrs = {str(k): str(v) for k, v in element.attrib.items() if "}" not in str(k)}
            found = FoundMachineKey(MachineKey.from_attributes(attrs), path, in_location, line)
            located = Located(found, tag, element, _scope_of(path) if in_location else "")
            if located.scope in seen:
                raise ConfigFileError(
                    "two <machineKey> elements apply to the same scope (the other is on line "
                    f"{seen[located.scope].found.line})",
                    source=source,
                    line=line,
                )
            seen[located.scope] = located
            parsed.located.append(located)
    return parsed


def inspect_config(data: bytes, source: str) -> ConfigInspection:
    """The machineKeys a web.config defines. Raises ConfigFileError naming the file."""
    return parse_config(data, source).inspection()
