"""The <machineKey> model: attributes, ASP.NET's validation rules, fingerprints.

This is one of the few modules that holds key material. Nothing here ever puts a key value
into a repr, a str or an exception message: keys are named by their fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from farmsync.algorithms import (
    COMPATIBILITY_MODES,
    DECRYPTION_ALGORITHMS,
    FRAMEWORK_V2,
    FRAMEWORK_V4,
    VALIDATION_ALGORITHMS,
    Algorithm,
    canonical_decryption,
    canonical_validation,
)
from farmsync.errors import MachineKeyError

AUTO_GENERATE = "AutoGenerate"
AUTO_MODIFIERS = ("IsolateApps", "IsolateByAppId")
DEFAULT_AUTO_KEY = "AutoGenerate,IsolateApps"  # ASP.NET's default for both keys
DEFAULT_COMPATIBILITY_MODE = "Framework20SP1"  # what ASP.NET assumes when the attribute is absent

# Attribute names in the order farmsync writes them (the classic generators' order).
ATTRIBUTE_ORDER = (
    "validationKey",
    "decryptionKey",
    "validation",
    "decryption",
    "compatibilityMode",
    "dataProtectorType",
    "applicationName",
)
MANAGED_ATTRIBUTES = frozenset(ATTRIBUTE_ORDER)

_HEX = re.compile(r"[0-9A-Fa-f]*")


def is_auto_generate(value: str) -> bool:
    """True for the AutoGenerate[,modifier...] forms (any spacing)."""
    return value.split(",", 1)[0].strip() == AUTO_GENERATE


def _canonical_key_value(value: str) -> str:
    """Normalise a key attribute for fingerprinting: hex upper-cased, AutoGenerate de-spaced."""
    if is_auto_generate(value):
        return ",".join(part.strip() for part in value.split(","))
    return value.strip().upper()


@dataclass(frozen=True)
class MachineKey:
    """One effective <machineKey> element.

    Construct freely; ``validate_key`` is the gate that applies ASP.NET's rules.
    ``from_attributes`` fills the defaults ASP.NET uses for omitted attributes.
    """

    validation_key: str
    decryption_key: str
    validation: str = "HMACSHA256"
    decryption: str = "AES"
    compatibility_mode: str | None = None
    data_protector_type: str | None = None
    application_name: str | None = None

    def __repr__(self) -> str:
        extra = ""
        if self.compatibility_mode is not None:
            extra += f", compatibility_mode={self.compatibility_mode!r}"
        if self.data_protector_type is not None:
            extra += ", data_protector_type=..."
        return (
            f"MachineKey({self.fingerprint()}, validation={self.validation!r}, "
            f"decryption={self.decryption!r}{extra})"
        )

    __str__ = __repr__

    @property
    def is_explicit(self) -> bool:
        """Both keys are given (not AutoGenerate, which differs on every node)."""
        return not (is_auto_generate(self.validation_key) or is_auto_generate(self.decryption_key))

    def canonical(self) -> str:
        """The effective element as one normalised string: the fingerprint's input.

        Attribute order, hex case, algorithm-name case and omitted defaults do not change it.
        """
        validation = canonical_validation(self.validation) or self.validation
        decryption = canonical_decryption(self.decryption) or self.decryption
        fields = (
            _canonical_key_value(self.validation_key),
            _canonical_key_value(self.decryption_key),
            validation,
            decryption,
            self.compatibility_mode or DEFAULT_COMPATIBILITY_MODE,
            self.data_protector_type or "",
            self.application_name or "",
        )
        pairs = zip(ATTRIBUTE_ORDER, fields, strict=True)
        return "\x1f".join(f"{name}={value}" for name, value in pairs)

    def fingerprint(self) -> str:
        """A short, stable, non-reversible name for this element.

        "mk-..." for explicit keys; "auto-..." when a key is AutoGenerate, because such an
        element yields a different real key on every node.
        """
        digest = hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()[:16]
        return ("mk-" if self.is_explicit else "auto-") + digest

    def attributes(self) -> dict[str, str]:
        """The attributes to write, in canonical order; unset optional ones are omitted."""
        values: dict[str, str | None] = {
            "validationKey": self.validation_key,
            "decryptionKey": self.decryption_key,
            "validation": self.validation,
            "decryption": self.decryption,
            "compatibilityMode": self.compatibility_mode,
            "dataProtectorType": self.data_protector_type,
            "applicationName": self.application_name,
        }
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, str]) -> MachineKey:
        """Build from an element's attributes, with ASP.NET's defaults for omitted ones.

        Known algorithm names are canonicalised; unknown ones are kept for ``validate_key``
        to report. Empty optional attributes count as absent, as in ASP.NET.
        """

        def optional(name: str) -> str | None:
            value = attrs.get(name)
            return value if value else None

        validation = attrs.get("validation", "HMACSHA256")
        decryption = attrs.get("decryption", "Auto")
        return cls(
            validation_key=attrs.get("validationKey", DEFAULT_AUTO_KEY),
            decryption_key=attrs.get("decryptionKey", DEFAULT_AUTO_KEY),
            validation=canonical_validation(validation) or validation,
            decryption=canonical_decryption(decryption) or decryption,
            compatibility_mode=optional("compatibilityMode"),
            data_protector_type=optional("dataProtectorType"),
            application_name=optional("applicationName"),
        )


def framework_of_path(path: str) -> str:
    """The .NET framework a config path belongs to (its folder names the version)."""
    return FRAMEWORK_V2 if FRAMEWORK_V2 in path.lower() else FRAMEWORK_V4


def _shown(name: str) -> str:
    """An attribute value safe to quote in a message (names only; long values are cut)."""
    return repr(name) if len(name) <= 24 else repr(name[:12] + "...")


def _check_key_value(
    attr: str,
    value: str,
    algorithm: Algorithm | None,
    alg_name: str,
    warnings: list[str],
    fail: _Fail,
) -> None:
    if is_auto_generate(value):
        parts = value.split(",")
        modifiers = [p.strip() for p in parts[1:]]
        unknown = [m for m in modifiers if m not in AUTO_MODIFIERS]
        if parts[0] != AUTO_GENERATE or unknown or len(set(modifiers)) != len(modifiers):
            fail(
                f"{attr}: invalid AutoGenerate form (allowed: AutoGenerate[,IsolateApps]"
                "[,IsolateByAppId])"
            )
        if any(p != p.strip() for p in parts):
            # ASP.NET looks for ",IsolateApps" literally: a space disables the modifier.
            warnings.append(
                f"{attr}: spaces in the AutoGenerate form make ASP.NET ignore the modifiers"
            )
        warnings.append(
            f"{attr} is AutoGenerate: each node derives its own key, so a farm "
            "needs an explicit key"
        )
        return
    if "," in value:
        fail(
            f"{attr}: IsolateApps/IsolateByAppId can only be used with AutoGenerate, "
            "not with an explicit key"
        )
    if not value or _HEX.fullmatch(value) is None:
        fail(f"{attr} must be hexadecimal digits only")
    if len(value) % 2:
        fail(f"{attr} must have an even number of hex digits (has {len(value)})")
    if algorithm is not None and not algorithm.accepts(len(value) // 2):
        if algorithm.allowed_bytes is not None:
            sizes = "/".join(str(2 * n) for n in algorithm.allowed_bytes)
        else:
            sizes = f"{2 * algorithm.min_bytes}-{2 * algorithm.max_bytes}"
        fail(f"{attr} has {len(value)} hex digits; {alg_name} needs {sizes}")


class _Fail:
    def __init__(self, source: str | None, line: int | None):
        self.source = source
        self.line = line

    def __call__(self, message: str) -> NoReturn:
        raise MachineKeyError(message, source=self.source, line=self.line)


def validate_key(
    key: MachineKey,
    framework: str = FRAMEWORK_V4,
    *,
    new_key: bool = False,
    force: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> list[str]:
    """Apply ASP.NET's rules to ``key``; return warnings, raise MachineKeyError when invalid.

    ``new_key``: the key is about to be deployed, so AutoGenerate is refused and weak
    algorithms (MD5, DES) are refused unless ``force``.
    """
    fail = _Fail(source, line)
    warnings: list[str] = []
    v2 = framework == FRAMEWORK_V2

    validation = canonical_validation(key.validation)
    if validation is None:
        fail(
            f"unknown validation algorithm {_shown(key.validation)} "
            f"(known: {', '.join(VALIDATION_ALGORITHMS)})"
        )
    decryption = canonical_decryption(key.decryption)
    if decryption is None:
        fail(
            f"unknown decryption algorithm {_shown(key.decryption)} "
            f"(known: {', '.join(DECRYPTION_ALGORITHMS)})"
        )
    v_alg = VALIDATION_ALGORITHMS[validation]
    d_alg = DECRYPTION_ALGORITHMS[decryption]

    if v2 and not v_alg.v2_ok:
        fail(
            f"validation={validation} is not valid in a {FRAMEWORK_V2} config "
            "(HMACSHA* needs .NET 4)"
        )
    if v2 and not d_alg.v2_ok:
        fail(f"decryption={decryption} is not valid in a {FRAMEWORK_V2} config")

    _check_key_value("validationKey", key.validation_key, v_alg, validation, warnings, fail)
    _check_key_value("decryptionKey", key.decryption_key, d_alg, decryption, warnings, fail)

    if key.compatibility_mode is not None:
        if key.compatibility_mode not in COMPATIBILITY_MODES:
            fail(
                f"unknown compatibilityMode {_shown(key.compatibility_mode)} "
                f"(known: {', '.join(COMPATIBILITY_MODES)})"
            )
        if v2 and key.compatibility_mode == "Framework45":
            fail(f"compatibilityMode=Framework45 is not valid in a {FRAMEWORK_V2} config")
    if key.data_protector_type is not None:
        if v2:
            fail(f"dataProtectorType is not valid in a {FRAMEWORK_V2} config")
        if not key.application_name:
            fail("dataProtectorType requires applicationName")

    for alg, attr in ((v_alg, "validation"), (d_alg, "decryption")):
        if new_key and alg.weak and not force:
            fail(f"{attr}={alg.name} is too weak for a new key (use --force to insist)")
        if alg.legacy:
            warnings.append(
                f"{attr}={alg.name} is a legacy algorithm; prefer "
                f"{'HMACSHA256' if attr == 'validation' else 'AES'}"
            )
    if new_key and not key.is_explicit:
        fail("a new key must be explicit, not AutoGenerate")
    return warnings
