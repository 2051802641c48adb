"""Key generation: sizes per algorithm, CSPRNG injection, refusal of weak algorithms."""

from __future__ import annotations

import os
import re

import pytest

from farmsync.errors import MachineKeyError
from farmsync.inventory.model import Policy
from farmsync.keys.generate import generate_key
from farmsync.keys.machinekey import validate_key

HEX_UPPER = re.compile(r"[0-9A-F]+")


class Recorder:
    """A deterministic byte source that records what was asked of it."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        return bytes((len(self.calls) * 17 + i) % 256 for i in range(n))


def test_defaults_are_modern() -> None:
    k = generate_key()
    assert (k.validation, k.decryption) == ("HMACSHA256", "AES")
    assert len(k.validation_key) == 128 and len(k.decryption_key) == 64
    assert HEX_UPPER.fullmatch(k.validation_key) and HEX_UPPER.fullmatch(k.decryption_key)
    assert k.is_explicit and k.compatibility_mode is None
    assert validate_key(k, new_key=True) == []


def test_default_source_is_the_os_csprng() -> None:
    # Two draws from os.urandom collide with negligible probability.
    assert generate_key().validation_key != generate_key().validation_key


@pytest.mark.parametrize(
    ("validation", "decryption", "v_hex", "d_hex"),
    [
        ("HMACSHA256", "AES", 128, 64),
        ("HMACSHA384", "AES", 256, 64),
        ("HMACSHA512", "AES", 256, 64),
        ("hmacsha512", "auto", 256, 64),
        ("SHA1", "AES", 128, 64),
        ("SHA1", "3DES", 128, 48),
    ],
)
def test_sizes_per_algorithm(validation: str, decryption: str, v_hex: int, d_hex: int) -> None:
    k = generate_key(Policy(validation=validation, decryption=decryption))
    assert (len(k.validation_key), len(k.decryption_key)) == (v_hex, d_hex)
    assert k.validation.lower() == validation.lower() and k.validation.isupper()


def test_randomness_is_injectable_and_deterministic() -> None:
    first, second = Recorder(), Recorder()
    a = generate_key(randbytes=first)
    b = generate_key(randbytes=second)
    assert a == b and first.calls == [64, 32]
    assert a.validation_key == bytes((17 + i) % 256 for i in range(64)).hex().upper()
    assert a.fingerprint() == b.fingerprint()


def test_short_randomness_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly 64 bytes"):
        generate_key(randbytes=lambda n: os.urandom(n - 1))


def test_compatibility_mode_from_policy() -> None:
    k = generate_key(Policy(compatibility_mode="Framework45"))
    assert k.compatibility_mode == "Framework45"
    with pytest.raises(MachineKeyError, match="compatibilityMode"):
        generate_key(Policy(compatibility_mode="Framework99"))


@pytest.mark.parametrize("policy", [Policy(validation="MD5"), Policy(decryption="DES")])
def test_weak_algorithms_need_force(policy: Policy) -> None:
    with pytest.raises(MachineKeyError, match="too weak") as info:
        generate_key(policy)
    assert info.value.source == "policy"
    k = generate_key(policy, force=True)
    assert k.is_explicit


def test_unknown_algorithm() -> None:
    with pytest.raises(MachineKeyError, match="unknown validation"):
        generate_key(Policy(validation="SHA3"))
    with pytest.raises(MachineKeyError, match="unknown decryption"):
        generate_key(Policy(decryption="ChaCha"))
