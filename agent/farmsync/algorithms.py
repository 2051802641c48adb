"""ASP.NET <machineKey> algorithm names and key-length rules (domain constants, no key material).

Shared by the inventory policy (to validate names) and the key model (to validate and generate).
Lengths are in bytes of key material (hex length is twice that).
"""

from __future__ import annotations

from dataclasses import dataclass

FRAMEWORK_V4 = "v4.0.30319"
FRAMEWORK_V2 = "v2.0.50727"
FRAMEWORKS = (FRAMEWORK_V4, FRAMEWORK_V2)
BITNESS = (32, 64)

COMPATIBILITY_MODES = ("Framework20SP1", "Framework20SP2", "Framework45")


@dataclass(frozen=True)
class Algorithm:
    name: str
    generate_bytes: int  # what farmsync generates
    allowed_bytes: tuple[int, ...] | None  # exact sizes accepted; None: a range
    min_bytes: int = 0
    max_bytes: int = 0
    legacy: bool = False  # accepted for existing farms, warned about
    weak: bool = False  # refused for new keys unless forced
    v2_ok: bool = True  # valid in a v2.0.50727 config

    def accepts(self, size: int) -> bool:
        if self.allowed_bytes is not None:
            return size in self.allowed_bytes
        return self.min_bytes <= size <= self.max_bytes


VALIDATION_ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("HMACSHA256", 64, None, 32, 128, v2_ok=False),
        Algorithm("HMACSHA384", 128, None, 48, 128, v2_ok=False),
        Algorithm("HMACSHA512", 128, None, 64, 128, v2_ok=False),
        Algorithm("SHA1", 64, None, 20, 128, legacy=True),
        Algorithm("MD5", 64, None, 20, 128, legacy=True, weak=True),
        Algorithm("3DES", 64, None, 20, 128, legacy=True),
        Algorithm("AES", 64, None, 20, 128, legacy=True),
    )
}

DECRYPTION_ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("AES", 32, (16, 24, 32)),
        Algorithm("Auto", 32, (8, 16, 24, 32)),
        Algorithm("3DES", 24, (16, 24), legacy=True),
        Algorithm("DES", 8, (8,), legacy=True, weak=True),
    )
}

DEFAULT_VALIDATION = "HMACSHA256"
DEFAULT_DECRYPTION = "AES"


def canonical_validation(name: str) -> str | None:
    """The canonical spelling of a validation algorithm name (ASP.NET is case-insensitive)."""
    for known in VALIDATION_ALGORITHMS:
        if known.lower() == name.lower():
            return known
    return None


def canonical_decryption(name: str) -> str | None:
    for known in DECRYPTION_ALGORITHMS:
        if known.lower() == name.lower():
            return known
    return None
