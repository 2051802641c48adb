"""The one table of inventory variables farmsync understands.

Each row names a variable, documents its type and default, and carries the converter that
turns a raw YAML value into the typed setting the model uses. The loader, the error messages
and the README's variable reference are all driven by :data:`VARIABLES`, so adding a variable
means adding one row here (and using it in the loader).

Converters raise :class:`VariableError`; the loader adds the file and line. A converter never
puts a secret variable's value into a message.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from farmsync.algorithms import (
    BITNESS,
    COMPATIBILITY_MODES,
    DEFAULT_DECRYPTION,
    DEFAULT_VALIDATION,
    FRAMEWORK_V4,
    FRAMEWORKS,
    canonical_decryption,
    canonical_validation,
)
from farmsync.errors import InputError
from farmsync.inventory.durations import parse_duration
from farmsync.inventory.model import (
    DEFAULT_NODE_TIMEOUT,
    DEFAULT_WINRM_MAX_ENVELOPE_KB,
    Policy,
    RecycleKind,
    RecycleSpec,
    Secret,
    Shell,
    Transport,
)

FARMSYNC_PREFIX = "farmsync_"


class VariableError(Exception):
    """A variable's value is unacceptable. ``line`` points inside the value when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class EnvPassword:
    """A password to be read from an environment variable when the inventory is loaded."""

    env_name: str


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Variable:
    name: str
    type_doc: str  # the type as shown to users ("list of 32 | 64")
    default: Any  # the typed default; None when unset means "not given"
    description: str
    convert: Converter
    default_doc: str | None = None  # shown instead of ``default`` when the default is computed
    secret: bool = False  # value never shown in messages
    group_only: bool = False  # only meaningful in group vars


# --- converters --------------------------------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_LOOKUP = re.compile(
    r"""^\{\{\s*lookup\(\s*['"](?:ansible\.builtin\.)?env['"]\s*,\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]"""
    r"""\s*\)\s*\}\}$"""
)
_JUMP = re.compile(r"^(?:[^@\s:]+@)?(?:\[[0-9A-Fa-f:.]+\]|[^@\s:\[\]]+)(?::(\d{1,5}))?$")


def env_lookup_name(value: str) -> str | None:
    """The NAME in Ansible's ``{{ lookup('env', 'NAME') }}``, the one template farmsync reads."""
    match = _ENV_LOOKUP.match(value.strip())
    return match.group(1) if match else None


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _require_str(value: Any, *, secret: bool = False, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        hint = " (quote it in YAML)" if isinstance(value, int | float) else ""
        raise VariableError(f"expected a string, got {_type_name(value)}{hint}")
    if not allow_empty and not value.strip():
        raise VariableError("must not be empty")
    if "{{" in value or "{%" in value:
        shown = "" if secret else f" {value!r}"
        raise VariableError(
            f"Jinja templates are not supported by farmsync{shown}; write the value itself"
        )
    return value


def _string(value: Any) -> str:
    return _require_str(value)


def _choice(choices: Iterable[str]) -> Converter:
    allowed = tuple(choices)

    def convert(value: Any) -> str:
        text = _require_str(value).strip().lower()
        if text not in allowed:
            raise VariableError(f"{value!r} is not one of: {', '.join(allowed)}")
        return text

    return convert


def _port(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # Ansible accepts "5986" as well as 5986
    if isinstance(value, bool) or not isinstance(value, int):
        raise VariableError(f"expected a port number, got {_type_name(value)}")
    if not 1 <= value <= 65535:
        raise VariableError(f"port {value} is outside 1-65535")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise VariableError(f"expected a whole number, got {_type_name(value)}")
    return value


def _envelope_kb(value: Any) -> int:
    kb = _integer(value)
    if kb < 32:  # WinRM's own minimum for MaxEnvelopeSizekb
        raise VariableError(f"MaxEnvelopeSizekb is at least 32, got {kb}")
    return kb


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VariableError(f"expected a number of seconds, got {_type_name(value)}")
    if not value > 0:
        raise VariableError(f"must be more than 0, got {value}")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise VariableError(f"expected true or false, got {_type_name(value)}")
    return value


def _items(value: Any, what: str) -> list[tuple[Any, int | None]]:
    """The items of a non-empty YAML list with their lines."""
    if not isinstance(value, list):
        raise VariableError(f"expected a list of {what}, got {_type_name(value)}")
    if not value:
        raise VariableError(f"expected at least one {what}, got an empty list")
    lines: list[int] = getattr(value, "item_lines", [])
    return [(item, lines[i] if i < len(lines) else None) for i, item in enumerate(value)]


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


_PATH_SEPARATORS = re.compile(r"[/\\]")


def _managed_path(item: Any) -> str:
    """A path farmsync will write beside: no control character (a NUL ends the name the node
    sees, a newline splits the commit script's lines) and no ``..`` that walks out of it."""
    path = _require_str(item).strip()
    for char in path:
        if unicodedata.category(char) == "Cc":
            raise VariableError(f"path {path!r} contains a control character (U+{ord(char):04X})")
    if ".." in _PATH_SEPARATORS.split(path):
        raise VariableError(f"path {path!r} has a '..' component; write the path it means")
    return path


def _path_list(value: Any) -> tuple[str, ...]:
    paths: list[str] = []
    for item, line in _items(value, "paths"):
        try:
            paths.append(_managed_path(item))
        except VariableError as exc:
            raise VariableError(f"list item: {exc.message}", line) from None
    return _unique(paths)


def _frameworks(value: Any) -> tuple[str, ...]:
    found: list[str] = []
    for item, line in _items(value, "framework versions"):
        text = item.strip() if isinstance(item, str) else item
        if isinstance(text, str) and not text.startswith("v"):
            text = "v" + text  # "4.0.30319" is a common spelling of v4.0.30319
        if text not in FRAMEWORKS:
            raise VariableError(
                f"unknown framework {item!r}; allowed: {', '.join(FRAMEWORKS)}", line
            )
        found.append(text)
    return _unique(found)


def _bitness(value: Any) -> tuple[int, ...]:
    found: list[int] = []
    for item, line in _items(value, "bitness values"):
        if isinstance(item, bool) or item not in BITNESS:
            raise VariableError(f"bitness must be 32 or 64, got {item!r}", line)
        found.append(int(item))
    return _unique(found)


def _env_name(value: Any) -> str:
    name = _require_str(value).strip()
    if not _ENV_NAME.match(name):
        raise VariableError(f"{name!r} is not a valid environment variable name")
    return name


def _password(value: Any) -> Secret | EnvPassword:
    if isinstance(value, str):
        env = env_lookup_name(value)
        if env is not None:
            return EnvPassword(env)
    return Secret(_require_str(value, secret=True, allow_empty=True))


_CONNECTIONS = {
    "ssh": Transport.SSH,
    "paramiko": Transport.SSH,
    "paramiko_ssh": Transport.SSH,
    "winrm": Transport.WINRM,
    "local": Transport.LOCAL,
}


def _connection(value: Any) -> Transport:
    text = _require_str(value).strip().lower()
    if text.startswith("ansible.builtin."):
        text = text.removeprefix("ansible.builtin.")
    elif text.startswith("ansible.windows."):
        text = text.removeprefix("ansible.windows.")
    if text not in _CONNECTIONS:
        raise VariableError(
            f"unsupported transport {value!r}; farmsync speaks ssh, winrm and local"
        )
    return _CONNECTIONS[text]


_SHELLS = {"sh": Shell.POSIX, "powershell": Shell.POWERSHELL, "cmd": Shell.POWERSHELL}


def _shell_type(value: Any) -> Shell:
    text = _require_str(value).strip().lower()
    if text not in _SHELLS:
        raise VariableError(f"unsupported shell type {value!r}; use sh, powershell or cmd")
    return _SHELLS[text]


WINRM_TRANSPORTS = ("ntlm", "kerberos", "credssp", "certificate", "basic", "plaintext", "ssl")


def _winrm_transport(value: Any) -> str:
    # Ansible allows a list (tried in order); farmsync uses exactly one.
    if isinstance(value, list):
        if len(value) != 1:
            raise VariableError("farmsync uses exactly one WinRM transport; name just one")
        value = value[0]
    text = _require_str(value).strip().lower()
    if "," in text:
        raise VariableError("farmsync uses exactly one WinRM transport; name just one")
    if text not in WINRM_TRANSPORTS:
        raise VariableError(f"unknown WinRM transport {value!r}; use {', '.join(WINRM_TRANSPORTS)}")
    return text


def _cert_validation(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _require_str(value).strip().lower()
    if text not in ("validate", "ignore"):
        raise VariableError(f"{value!r} is not one of: validate, ignore")
    return text == "validate"


def _winrm_path(value: Any) -> str:
    path = _require_str(value).strip()
    if not path.startswith("/"):
        raise VariableError(f"WinRM path {path!r} must start with '/'")
    return path


def _jump(value: Any) -> str:
    text = _require_str(value).strip()
    match = _JUMP.match(text)
    if match is None or (match.group(1) and not 1 <= int(match.group(1)) <= 65535):
        raise VariableError(f"{text!r} is not of the form [user@]host[:port]")
    return text


def _key_line(mapping: Any, key: Any) -> int | None:
    lines: dict[Any, int] = getattr(mapping, "key_lines", {})
    return lines.get(key)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _recycle(value: Any) -> RecycleSpec:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "none":
            return RecycleSpec()
        if text == "iis":
            return RecycleSpec(kind=RecycleKind.IIS)
        raise VariableError(
            f"{value!r} is not a recycle action; "
            "use none, iis, {iis: [pools]} or {command: ...}"
        )
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        line = _key_line(value, key)
        if key == "iis":
            pools: list[str] = []
            for item, item_line in _items(inner, "application pool names"):
                try:
                    pools.append(_require_str(item).strip())
                except VariableError as exc:
                    raise VariableError(f"application pool: {exc.message}", item_line) from None
            return RecycleSpec(kind=RecycleKind.IIS, app_pools=_unique(pools))
        if key == "command":
            try:
                command = _require_str(inner).strip()
            except VariableError as exc:
                raise VariableError(f"command: {exc.message}", line) from None
            return RecycleSpec(kind=RecycleKind.COMMAND, command=command)
        raise VariableError(
            f"unknown recycle action {key!r}{_suggest(str(key), ('iis', 'command'))}", line
        )
    raise VariableError(
        f"expected none, iis, {{iis: [pools]}} or {{command: ...}}, got {_type_name(value)}"
    )


POLICY_KEYS = {
    "validation": f"validation algorithm (default {DEFAULT_VALIDATION})",
    "decryption": f"decryption algorithm (default {DEFAULT_DECRYPTION})",
    "compatibility_mode": f"machineKey compatibilityMode: {', '.join(COMPATIBILITY_MODES)}",
    "max_key_age": 'age after which a key is due for rotation, e.g. "90d", "12w"',
}


def _policy(value: Any) -> Policy:
    if not isinstance(value, dict):
        raise VariableError(
            f"expected a mapping with {', '.join(POLICY_KEYS)}, got {_type_name(value)}"
        )
    fields: dict[str, Any] = {}
    for key, inner in value.items():
        line = _key_line(value, key)
        if key not in POLICY_KEYS:
            hint = _suggest(str(key), POLICY_KEYS)
            raise VariableError(f"unknown policy key {key!r}{hint}", line)
        try:
            text = _require_str(inner).strip()
        except VariableError as exc:
            raise VariableError(f"{key}: {exc.message}", line) from None
        if key == "validation":
            canonical = canonical_validation(text)
            if canonical is None:
                raise VariableError(f"unknown validation algorithm {text!r}", line)
            fields["validation"] = canonical
        elif key == "decryption":
            canonical = canonical_decryption(text)
            if canonical is None:
                raise VariableError(f"unknown decryption algorithm {text!r}", line)
            fields["decryption"] = canonical
        elif key == "compatibility_mode":
            modes = {m.lower(): m for m in COMPATIBILITY_MODES}
            if text.lower() not in modes:
                raise VariableError(
                    f"unknown compatibility mode {text!r}; use {', '.join(COMPATIBILITY_MODES)}",
                    line,
                )
            fields["compatibility_mode"] = modes[text.lower()]
        else:
            try:
                age = parse_duration(text)
            except InputError as exc:
                raise VariableError(f"max_key_age: {exc.message}", line) from None
            if age.total_seconds() <= 0:
                raise VariableError("max_key_age must be more than zero", line)
            fields["max_key_age_days"] = age.total_seconds() / 86400
    return Policy(**fields)


# --- the table ---------------------------------------------------------------------------

_TABLE: tuple[Variable, ...] = (
    # Ansible connection variables farmsync honours.
    Variable(
        "ansible_connection",
        "ssh | winrm | local",
        Transport.SSH,
        "How to reach the node (psrp and others are refused).",
        _connection,
    ),
    Variable(
        "ansible_host",
        "string",
        None,
        "Address to connect to.",
        _string,
        default_doc="the inventory host name",
    ),
    Variable(
        "ansible_port",
        "port",
        None,
        "Port to connect to.",
        _port,
        default_doc="22 (ssh), 5986 (winrm https), 5985 (winrm http)",
    ),
    Variable("ansible_user", "string", None, "User to log in as.", _string),
    Variable(
        "ansible_password",
        "string",
        None,
        "Password in plain text (warned about; prefer farmsync_password_env). "
        "`{{ lookup('env', 'NAME') }}` is read from the environment.",
        _password,
        secret=True,
    ),
    Variable(
        "ansible_shell_type",
        "sh | powershell | cmd",
        None,
        "Remote shell; powershell or cmd marks an SSH host as Windows.",
        _shell_type,
        default_doc="powershell (winrm), sh (ssh, local)",
    ),
    Variable(
        "ansible_winrm_transport",
        "ntlm | kerberos | credssp | certificate | basic | ...",
        "ntlm",
        "WinRM authentication.",
        _winrm_transport,
    ),
    Variable(
        "ansible_winrm_scheme",
        "https | http",
        None,
        "WinRM scheme.",
        _choice(("https", "http")),
        default_doc="http on port 5985, else https",
    ),
    Variable(
        "ansible_winrm_server_cert_validation",
        "validate | ignore",
        True,
        "Check the WinRM server's TLS certificate (ignore is warned about).",
        _cert_validation,
        default_doc="validate",
    ),
    Variable(
        "ansible_winrm_ca_trust_path",
        "path",
        None,
        "CA bundle used to check the WinRM server certificate.",
        _string,
    ),
    Variable("ansible_winrm_path", "string", "/wsman", "WS-Management URL path.", _winrm_path),
    Variable(
        "ansible_winrm_cert_pem",
        "path",
        None,
        "Client certificate for certificate authentication.",
        _string,
    ),
    Variable(
        "ansible_winrm_cert_key_pem",
        "path",
        None,
        "Private key of the client certificate.",
        _string,
    ),
    Variable(
        "ansible_ssh_private_key_file",
        "path",
        None,
        "SSH private key to log in with.",
        _string,
    ),
    Variable(
        "ansible_group_priority",
        "integer",
        1,
        "Group vars only: among groups of the same depth, the higher priority wins.",
        _integer,
        group_only=True,
    ),
    # farmsync's own variables.
    Variable(
        "farmsync_farm",
        "string",
        None,
        "Name of the farm every host belongs to.",
        _string,
        default_doc="the inventory file name without extension",
    ),
    Variable(
        "farmsync_frameworks",
        "list of v4.0.30319 | v2.0.50727",
        (FRAMEWORK_V4,),
        ".NET Framework versions whose root web.config is managed.",
        _frameworks,
        default_doc=f"[{FRAMEWORK_V4}]",
    ),
    Variable(
        "farmsync_bitness",
        "list of 32 | 64",
        BITNESS,
        "Framework (32) and/or Framework64 (64) root web.config.",
        _bitness,
        default_doc="[32, 64]",
    ),
    Variable(
        "farmsync_root_configs",
        "list of paths",
        (),
        "Root web.config paths to manage, instead of the computed Windows ones "
        "(required for Linux/Mono nodes).",
        _path_list,
        default_doc="computed from frameworks and bitness (Windows)",
    ),
    Variable(
        "farmsync_app_configs",
        "list of paths",
        (),
        "Application web.config paths audited for `<machineKey>` overrides.",
        _path_list,
        default_doc="[]",
    ),
    Variable(
        "farmsync_recycle",
        "none | iis | {iis: [pools]} | {command: ...}",
        RecycleSpec(),
        "What to do on the node after its key changed.",
        _recycle,
        default_doc="none",
    ),
    Variable(
        "farmsync_password_env",
        "environment variable name",
        None,
        "Environment variable holding the login password (must be set).",
        _env_name,
    ),
    Variable(
        "farmsync_policy",
        "mapping: " + ", ".join(POLICY_KEYS),
        Policy(),
        "Key policy: validation, decryption, compatibility_mode, max_key_age (one per farm).",
        _policy,
        default_doc=f"{{validation: {DEFAULT_VALIDATION}, decryption: {DEFAULT_DECRYPTION}}}",
    ),
    Variable(
        "farmsync_known_hosts",
        "path",
        None,
        "known_hosts file with pinned SSH host keys (in addition to the user's).",
        _string,
    ),
    Variable(
        "farmsync_ssh_jump",
        "[user@]host[:port]",
        None,
        "SSH jump host to connect through.",
        _jump,
    ),
    Variable(
        "farmsync_winrm_allow_insecure_basic",
        "boolean",
        False,
        "Allow Basic authentication over plain HTTP (refused otherwise).",
        _boolean,
    ),
    Variable(
        "farmsync_winrm_max_envelope_kb",
        "KB",
        DEFAULT_WINRM_MAX_ENVELOPE_KB,
        "The node's WinRM MaxEnvelopeSizekb (32 or more): a request line up to about 3/4 of "
        "it goes in one Send. A node that refuses one (HTTP 413) gets 96 KiB Sends, with a "
        "warning.",
        _envelope_kb,
    ),
    Variable(
        "farmsync_timeout",
        "seconds",
        DEFAULT_NODE_TIMEOUT,
        "Connection and command timeout.",
        _positive_number,
        default_doc=f"{DEFAULT_NODE_TIMEOUT:g}",
    ),
)

VARIABLES: Mapping[str, Variable] = {v.name: v for v in _TABLE}

FARMSYNC_VARIABLES = tuple(name for name in VARIABLES if name.startswith(FARMSYNC_PREFIX))

# Variables (ours or Ansible's) whose value is a secret: hidden from Host.variables and messages.
_SECRET_NAME = re.compile(r"(?:^|_)(?:pass|password|passwd|passphrase|secret|token)$")


def is_secret_name(name: str) -> bool:
    variable = VARIABLES.get(name)
    return (variable is not None and variable.secret) or bool(_SECRET_NAME.search(name))


def unknown_name_message(name: str) -> str | None:
    """An error message if ``name`` is a farmsync_ variable farmsync does not know; else None."""
    if not name.startswith(FARMSYNC_PREFIX) or name in VARIABLES:
        return None
    return f"unknown farmsync variable {name!r}{_suggest(name, FARMSYNC_VARIABLES)}"


# Ansible variables farmsync does not read but that are right as they are: no typo warning.
_OTHER_ANSIBLE = frozenset(
    {
        "ansible_python_interpreter",
        "ansible_become",
        "ansible_become_user",
        "ansible_become_method",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_become_exe",
        "ansible_become_flags",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
        "ansible_sftp_extra_args",
        "ansible_scp_extra_args",
        "ansible_ssh_pipelining",
        "ansible_ssh_executable",
        "ansible_private_key_file",
        "ansible_ssh_pass",
        "ansible_ssh_host",
        "ansible_ssh_port",
        "ansible_ssh_user",
        "ansible_shell_executable",
        "ansible_winrm_kerberos_delegation",
        "ansible_winrm_message_encryption",
        "ansible_winrm_operation_timeout_sec",
        "ansible_winrm_read_timeout_sec",
        "ansible_winrm_kinit_cmd",
        "ansible_winrm_kerberos_hostname_override",
        "ansible_winrm_service",
        "ansible_winrm_realm",
        "ansible_winrm_send_cbt",
        "ansible_psrp_auth",
        "ansible_network_os",
        "ansible_timeout",
        "ansible_connection_timeout",
    }
)


def ansible_typo_message(name: str) -> str | None:
    """A warning for an ``ansible_*`` name farmsync does not read but that is one typo away
    from one it does (``ansible_conection``): else the setting is silently not applied and
    the error, if any, comes later and elsewhere (a host "not a Windows host")."""
    if not name.startswith("ansible_") or name in VARIABLES or name in _OTHER_ANSIBLE:
        return None
    known = [n for n in VARIABLES if n.startswith("ansible_")]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
    if not close:
        return None
    return f"{name!r} is not a variable farmsync reads (did you mean {close[0]!r}?); ignored"


def convert(name: str, value: Any) -> Any:
    """The typed value of known variable ``name``; raise VariableError if it is wrong."""
    return VARIABLES[name].convert(value)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default_text(variable: Variable) -> str:
    if variable.default_doc is not None:
        return variable.default_doc
    default = variable.default
    if default is None:
        return "—"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return "[" + ", ".join(str(item) for item in default) + "]"
    return str(default)


def variables_reference_markdown() -> str:
    """A Markdown table of every supported variable, for the README."""
    rows = [
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for variable in _TABLE:
        cells = (
            f"`{variable.name}`",
            _markdown_cell(variable.type_doc),
            _markdown_cell(_default_text(variable)),
            _markdown_cell(variable.description),
        )
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("")
    rows.append(
        "Other `ansible_*` and custom variables are kept and ignored; an unknown `farmsync_*` "
        "variable is an error, and an `ansible_*` name one typo away from one farmsync reads "
        "(`ansible_conection`) is warned about, with the name it probably meant. Relative "
        "paths of files on the controller (`ansible_ssh_private_key_file`, "
        "`farmsync_known_hosts`, `ansible_winrm_ca_trust_path`, client certificates) are "
        "relative to the inventory file, and `~` is the home directory; a file that does not "
        "exist is an error naming file and line."
    )
    return "\n".join(rows) + "\n"
