"""Generating a new machineKey from the operating system's CSPRNG."""

from __future__ import annotations

import os
from collections.abc import Callable

from farmsync.algorithms import (
    DECRYPTION_ALGORITHMS,
    VALIDATION_ALGORITHMS,
    canonical_decryption,
    canonical_validation,
)
from farmsync.errors import MachineKeyError
from farmsync.inventory.model import Policy
from farmsync.keys.machinekey import MachineKey, validate_key


def _random_hex(randbytes: Callable[[int], bytes], size: int) -> str:
    data = randbytes(size)
    if not isinstance(data, bytes) or len(data) != size:
        raise ValueError(f"randbytes({size}) must return exactly {size} bytes")
    return data.hex().upper()


def generate_key(
    policy: Policy | None = None,
    *,
    force: bool = False,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> MachineKey:
    """A fresh explicit key for ``policy`` (default: HMACSHA256 + AES-256).

    Key sizes are the algorithm table's ``generate_bytes``. Weak algorithms are refused
    unless ``force``. ``randbytes`` is injectable so tests can be deterministic.
    """
    policy = policy or Policy()
    validation = canonical_validation(policy.validation)
    decryption = canonical_decryption(policy.decryption)
    if validation is None:
        raise MachineKeyError(
            f"unknown validation algorithm {policy.validation!r}", source="policy"
        )
    if decryption is None:
        raise MachineKeyError(
            f"unknown decryption algorithm {policy.decryption!r}", source="policy"
        )
    key = MachineKey(
        validation_key=_random_hex(randbytes, VALIDATION_ALGORITHMS[validation].generate_bytes),
        decryption_key=_random_hex(randbytes, DECRYPTION_ALGORITHMS[decryption].generate_bytes),
        validation=validation,
        decryption=decryption,
        compatibility_mode=policy.compatibility_mode,
    )
    validate_key(key, new_key=True, force=force, source="policy")
    return key
