"""Rendering a key for pasting: XML element, JSON, appcmd or PowerShell.

These outputs contain the raw keys on purpose: they are what ``farmsync keygen`` prints to
stdout. Nothing else may call them for logging.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from farmsync.errors import MachineKeyError
from farmsync.keys.machinekey import MachineKey

Format = Literal["xml", "json", "appcmd", "powershell"]
FORMATS: tuple[Format, ...] = ("xml", "json", "appcmd", "powershell")

_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\t": "&#9;", "\n": "&#10;",
                "\r": "&#13;"}


def xml_attribute_value(value: str, quote: str = '"') -> str:
    """``value`` escaped for an XML attribute delimited by ``quote`` (quotes not included)."""
    escaped = "".join(_XML_ESCAPES.get(ch, ch) for ch in value)
    return escaped.replace('"', "&quot;") if quote == '"' else escaped.replace("'", "&apos;")


def render_xml(key: MachineKey) -> str:
    attrs = " ".join(f'{name}="{xml_attribute_value(value)}"'
                     for name, value in key.attributes().items())
    return f"<machineKey {attrs} />"


_CMD_PLAIN = re.compile(r"[A-Za-z0-9,._:+-]*")
_CMD_UNSAFE = re.compile(r'["%!\x00-\x1f]')


def _cmd_argument(name: str, value: str) -> str:
    arg = f"/{name}:{value}"
    if _CMD_PLAIN.fullmatch(value):
        return arg
    if _CMD_UNSAFE.search(value):
        # cmd.exe expands % and ! even inside quotes; refuse rather than emit a trap.
        raise MachineKeyError(f"{name} cannot be written safely on a cmd.exe command line",
                              source="--format appcmd")
    return f'"{arg}"'


def render_appcmd(key: MachineKey) -> str:
    args = " ".join(_cmd_argument(n, v) for n, v in key.attributes().items())
    return (r"%windir%\system32\inetsrv\appcmd.exe set config /commit:WEBROOT "
            f"/section:machineKey {args}")


def _ps_literal(value: str) -> str:
    # Single-quoted PowerShell strings expand nothing; quotes (incl. typographic) double up.
    return "'" + re.sub(r"(['\u2018\u2019\u201a\u201b])", r"\1\1", value) + "'"


def render_powershell(key: MachineKey) -> str:
    lines = [
        f"# machineKey {key.fingerprint()} for the root web.config (MACHINE/WEBROOT)",
        "Import-Module WebAdministration",
    ]
    for name, value in key.attributes().items():
        lines.append(
            "Set-WebConfigurationProperty -PSPath 'MACHINE/WEBROOT' "
            f"-Filter 'system.web/machineKey' -Name {_ps_literal(name)} "
            f"-Value {_ps_literal(value)}"
        )
    return "\n".join(lines)


def render_json(key: MachineKey) -> str:
    return json.dumps({"fingerprint": key.fingerprint(), "machineKey": key.attributes()},
                      indent=2)


def render_key(key: MachineKey, fmt: Format) -> str:
    """``key`` in format ``fmt`` (no trailing newline)."""
    if fmt == "xml":
        return render_xml(key)
    if fmt == "json":
        return render_json(key)
    if fmt == "appcmd":
        return render_appcmd(key)
    if fmt == "powershell":
        return render_powershell(key)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
