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

_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def xml_attribute_value(value: str, quote: str = '"') -> str:
    """``value`` escaped for an XML attribute delimited by ``quote`` (quotes not included)."""
    escaped = "".join(_XML_ESCAPES.get(ch, ch) for ch in value)
    return escaped.replace('"', "&quot;") if quote == '"' else escaped.replace("'", "&apos;")


def render_xml(key: MachineKey) -> str:
    attrs = " ".join(
        f'{name}="{xml_attribute_value(value)}"' for name, value in key.attributes().items()
    )
    return f"<machineKey {attrs} />"


_CMD_PLAIN = re.compile(r"[A-Za-z0-9,._:+-]*")
_CMD_UNSAFE = re.compile(r'["%!\x00-\x1f]')


def _cmd_argument(name: str, value: str) -> str:
    arg = f"/{name}:{value}"
    if _CMD_PLAIN.fullmatch(value):
        return arg
    if _CMD_UNSAFE.search(value):
        # cmd.exe expands % and ! even inside quotes; refuse rather than emit a trap.
        raise MachineKeyError(
            f"{name} cannot be written safely on a cmd.exe command line", source="--format appcmd"
        )
    return f'"{arg}"'


# The .NET 4 root web.config each bitness reads, and the appcmd that writes it: a 64-bit
# appcmd (and a 64-bit process's MACHINE/WEBROOT) reaches only Framework64's, so a paste that
# sets one bitness leaves 32-bit pools on the old key, the split farmsync exists to prevent.
ROOT_CONFIG_64 = r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config"
ROOT_CONFIG_32 = r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config"
APPCMD_64 = r"%windir%\system32\inetsrv\appcmd.exe"
APPCMD_32 = r"%windir%\SysWOW64\inetsrv\appcmd.exe"
APPCMD_32_PS = r"$env:windir\SysWOW64\inetsrv\appcmd.exe"


def render_appcmd(key: MachineKey) -> str:
    """Two cmd.exe lines, one per root web.config, each after a ``rem`` naming its file."""
    args = " ".join(_cmd_argument(n, v) for n, v in key.attributes().items())
    tail = f" set config /commit:WEBROOT /section:machineKey {args}"
    return "\n".join(
        (
            f"rem machineKey {key.fingerprint()}: sets {ROOT_CONFIG_64} (64-bit app pools)",
            APPCMD_64 + tail,
            f"rem machineKey {key.fingerprint()}: sets {ROOT_CONFIG_32} (32-bit app pools)",
            APPCMD_32 + tail,
        )
    )


def _ps_literal(value: str) -> str:
    # Single-quoted PowerShell strings expand nothing; quotes (incl. typographic) double up.
    return "'" + re.sub(r"(['\u2018\u2019\u201a\u201b])", r"\1\1", value) + "'"


def render_powershell(key: MachineKey) -> str:
    """Run from a 64-bit PowerShell, where MACHINE/WEBROOT is Framework64's root web.config;
    the 32-bit root is set by the 32-bit appcmd. Each line's comment names its file."""
    sixty_four = f"  # sets {ROOT_CONFIG_64} (64-bit app pools)"
    thirty_two = f"  # sets {ROOT_CONFIG_32} (32-bit app pools)"
    sets = [
        "Set-WebConfigurationProperty -PSPath 'MACHINE/WEBROOT' "
        f"-Filter 'system.web/machineKey' -Name {_ps_literal(name)} "
        f"-Value {_ps_literal(value)}{sixty_four}"
        for name, value in key.attributes().items()
    ]
    appcmd_args = " ".join(_ps_literal(f"/{n}:{v}") for n, v in key.attributes().items())
    return "\n".join(
        [
            f"# machineKey {key.fingerprint()} for both .NET 4 root web.config files",
            "if (-not [Environment]::Is64BitProcess) { throw 'run this from 64-bit PowerShell' }",
            "Import-Module WebAdministration",
            *sets,
            f'& "{APPCMD_32_PS}" set config /commit:WEBROOT /section:machineKey '
            f"{appcmd_args}{thirty_two}",
        ]
    )


def render_json(key: MachineKey) -> str:
    return json.dumps({"fingerprint": key.fingerprint(), "machineKey": key.attributes()}, indent=2)


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
