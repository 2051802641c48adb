"""The per-farm key vault: every key farmsync generates, encrypted at rest, with its history.

A key is stored here before any node is touched, so a key that reached a node is never lost,
and the history (active, retired, abandoned) is what rollback and sync work from.

File format (version 1), all integers big-endian::

    magic "FSVAULT\\0" | version u16 | log2(scrypt n) u8 | scrypt r u32 | scrypt p u32
    | salt (16) | nonce (12) | AES-256-GCM(JSON document) with its 16-byte tag

The key is scrypt(secret, salt, n, r, p). The whole header is the GCM associated data, so
changing a parameter, the salt or the nonce fails authentication like any other tampering.
Each save draws a fresh salt and nonce, so no (key, nonce) pair is ever used twice. scrypt
is slow on purpose, so a caller can derive it beside other work: :meth:`KeyVault.opening`
derives the opening key in a worker thread, :meth:`KeyVault.prepare_saves` the keys of the
next saves (each over its own fresh salt, used by one save only).

A wrong secret, a tampered file, a truncated file and a file that is not a vault are one
error on purpose (see :class:`farmsync.errors.VaultError`); opening never yields wrong keys.
Saves happen under the farm lock held by the caller; readers without the lock are safe
because a save replaces the file atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from farmsync.errors import VaultError, state_writes
from farmsync.fsutil import atomic_write_private
from farmsync.keys.machinekey import MachineKey

PASSPHRASE_ENV = "FARMSYNC_VAULT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
KEY_FILE_ENV = "FARMSYNC_VAULT_KEY_FILE"

MAGIC = b"FSVAULT\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sHBII16s12s")
_TAG_BYTES = 16
_KEY_FILE_MAX_BYTES = 65536
# A tampered header must not make us allocate unbounded memory before authentication fails.
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
_MAX_SCRYPT_P = 16


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- the secret --------------------------------------------------------------------------


class VaultSecret:
    """The passphrase or key-file bytes the vault key is derived from. Never shown."""

    __slots__ = ("_material", "source")

    def __init__(self, material: bytes, source: str):
        if not material:
            raise VaultError(f"the vault secret from {source} is empty")
        self._material = material
        self.source = source  # where it came from, for messages: never the value

    def reveal(self) -> bytes:
        return self._material

    def __repr__(self) -> str:
        return f"VaultSecret(<{self.source}>)"

    __str__ = __repr__

    @classmethod
    def from_passphrase(cls, passphrase: str, source: str = "passphrase") -> VaultSecret:
        return cls(passphrase.encode("utf-8"), source)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> VaultSecret:
        """The file's bytes (one trailing newline dropped). The file must be a regular file
        readable by its owner only (0600 or 0400): a key anyone can read protects nothing."""
        where = os.fspath(path)
        try:
            fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise VaultError(f"cannot read vault key file {where}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise VaultError(f"vault key file {where} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise VaultError(
                    f"vault key file {where} is readable or writable by group or others "
                    f"(mode {mode:04o}); make it private: chmod 600 {where}"
                )
            data = os.read(fd, _KEY_FILE_MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > _KEY_FILE_MAX_BYTES:
            raise VaultError(f"vault key file {where} is larger than {_KEY_FILE_MAX_BYTES} bytes")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        return cls(data, f"key file {where}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], key_file: str | None = None) -> VaultSecret:
        """The secret the operator configured.

        Precedence: ``key_file`` (``--vault-key-file``), then ``FARMSYNC_VAULT_KEY_FILE``,
        then ``FARMSYNC_VAULT_PASSPHRASE``: a key file named explicitly is the more
        deliberate choice.
        """
        if key_file:
            return cls.from_key_file(key_file)
        env_file = environ.get(KEY_FILE_ENV)
        if env_file:
            return cls.from_key_file(env_file)
        passphrase = environ.get(PASSPHRASE_ENV)
        if passphrase:
            return cls.from_passphrase(passphrase, PASSPHRASE_ENV)
        raise VaultError(
            "no vault secret: farmsync encrypts its key vault and needs a passphrase or a key "
            f"file. Set {PASSPHRASE_ENV}, or point {KEY_FILE_ENV} (or --vault-key-file) at a "
            "file only you can read (chmod 600)"
        )


# --- key derivation ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptParams:
    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("scrypt n must be a power of two >= 2")
        if self.r < 1 or not 1 <= self.p <= _MAX_SCRYPT_P:
            raise ValueError(f"scrypt r must be >= 1 and p in 1..{_MAX_SCRYPT_P}")
        if 128 * self.n * self.r > _MAX_SCRYPT_MEMORY:
            raise ValueError("scrypt parameters need more than 256 MiB of memory")

    @property
    def log2_n(self) -> int:
        return self.n.bit_length() - 1

    def derive(self, secret: VaultSecret, salt: bytes) -> bytes:
        kdf = Scrypt(salt=salt, length=32, n=self.n, r=self.r, p=self.p)
        return kdf.derive(secret.reveal())


# --- entries -----------------------------------------------------------------------------


class KeyStatus(StrEnum):
    GENERATED = "generated"  # stored, not (yet) on the farm
    ACTIVE = "active"  # the farm's key
    RETIRED = "retired"  # was the farm's key; a rollback target
    ABANDONED = "abandoned"  # generated for a run that did not deploy it


class KeyOrigin(StrEnum):
    GENERATED = "generated"  # made by farmsync
    IMPORTED = "imported"  # found on the farm (adopted before the first rotation)


@dataclass(frozen=True)
class VaultEntry:
    fingerprint: str
    created_at: str  # UTC ISO 8601
    run_id: str  # the run that stored the key
    status: KeyStatus
    key: MachineKey = field(repr=False, compare=False)
    origin: KeyOrigin = KeyOrigin.GENERATED
    activated_at: str | None = None
    activated_run: str | None = None  # the run that last made it the farm's key
    retired_at: str | None = None

    def summary(self) -> dict[str, str | None]:
        """Everything but the key, for history listings and JSON output."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.status.value,
            "origin": self.origin.value,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "activated_at": self.activated_at,
            "activated_run": self.activated_run,
            "retired_at": self.retired_at,
            "validation": self.key.validation,
            "decryption": self.key.decryption,
        }

    def _to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "status": self.status.value,
            "origin": self.origin.value,
            "activated_at": self.activated_at,
            "activated_run": self.activated_run,
            "retired_at": self.retired_at,
            "key": self.key.attributes(),
        }

    @classmethod
    def _from_json(cls, doc: Mapping[str, Any]) -> VaultEntry:
        attrs = doc["key"]
        if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
        ):
            raise ValueError("bad key attributes")
        key = MachineKey.from_attributes(attrs)
        if key.fingerprint() != doc["fingerprint"]:
            raise ValueError("fingerprint mismatch")

        def opt(name: str) -> str | None:
            value = doc.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"bad {name}")
            return value

        return cls(
            fingerprint=str(doc["fingerprint"]),
            created_at=str(doc["created_at"]),
            run_id=str(doc["run_id"]),
            status=KeyStatus(doc["status"]),
            key=key,
            origin=KeyOrigin(doc.get("origin", KeyOrigin.GENERATED)),
            activated_at=opt("activated_at"),
            activated_run=opt("activated_run"),
            retired_at=opt("retired_at"),
        )


# --- identity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultIdentity:
    """Who this vault is to the farm markers on the nodes (see orchestration/marker.py)."""

    vault_id: str
    farm_id: str | None = None  # set by the first run that writes a marker
    generation: int = 0  # the highest marker generation this vault has written
    takeovers: list[dict[str, Any]] = field(default_factory=list)  # `rotate --adopt` records

    @classmethod
    def new(cls) -> VaultIdentity:
        return cls(vault_id=secrets.token_hex(8))

    @classmethod
    def legacy(cls, farm: str, created_at: str) -> VaultIdentity:
        """A vault written before identities: an id derived from what it already holds, so
        that it stays the same without a save."""
        digest = hashlib.sha256(f"{farm}\0{created_at}".encode()).hexdigest()
        return cls(vault_id=digest[:16])

    def to_json(self) -> dict[str, Any]:
        return {
            "vault_id": self.vault_id,
            "farm_id": self.farm_id,
            "generation": self.generation,
            "takeovers": self.takeovers,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], farm: str, created_at: str) -> VaultIdentity:
        if "vault_id" not in doc:
            return cls.legacy(farm, created_at)
        farm_id = doc.get("farm_id")
        takeovers = doc.get("takeovers") or []
        if (
            not isinstance(doc["vault_id"], str)
            or not (farm_id is None or isinstance(farm_id, str))
            or not isinstance(doc.get("generation", 0), int)
            or not isinstance(takeovers, list)
        ):
            raise ValueError("bad vault identity")
        return cls(doc["vault_id"], farm_id, int(doc.get("generation", 0)), list(takeovers))


# --- the vault ---------------------------------------------------------------------------


class KeyVault:
    """One farm's vault file. Every change is saved before the method returns."""

    def __init__(
        self,
        path: Path,
        secret: VaultSecret,
        farm: str,
        params: ScryptParams,
        created_at: str,
        entries: list[VaultEntry],
        identity: VaultIdentity | None = None,
    ):
        # Use create/open/open_or_create; this only assembles an already-loaded vault.
        self.path = path
        self.farm = farm
        self.params = params
        self.created_at = created_at
        self._secret = secret
        self._entries = entries  # oldest first
        self.identity = identity or VaultIdentity.legacy(farm, created_at)
        self._prepared: _SaltedKeys | None = None  # see prepare_saves
        self._batched = False  # inside one_save: changes are written when it ends

    def __repr__(self) -> str:
        return f"KeyVault({str(self.path)!r}, farm={self.farm!r}, keys={len(self._entries)})"

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        secret: VaultSecret,
        farm: str,
        *,
        params: ScryptParams | None = None,
    ) -> KeyVault:
        vault = cls.new(path, secret, farm, params=params)
        vault._save()
        return vault

    @classmethod
    def new(
        cls,
        path: Path | str,
        secret: VaultSecret,
        farm: str,
        *,
        params: ScryptParams | None = None,
    ) -> KeyVault:
        """A vault with its identity but no file yet: its first change writes the file, so a
        run that is refused before it stores a key leaves no empty vault behind."""
        path = Path(path)
        if path.exists():
            raise VaultError(f"a key vault already exists at {path}")
        return cls(
            path, secret, farm, params or ScryptParams(), _utc_now(), [], VaultIdentity.new()
        )

    @classmethod
    def open(cls, path: Path | str, secret: VaultSecret, *, farm: str | None = None) -> KeyVault:
        return _SealedFile.read(Path(path)).unseal(secret, farm)

    @classmethod
    def opening(
        cls,
        path: Path | str,
        secret: VaultSecret,
        *,
        farm: str | None = None,
        prepare_saves: int = 0,
    ) -> VaultOpening:
        """Open the vault in the background: the file is read now (a missing or unreadable
        vault raises here), its key is derived and the document decrypted in a worker thread.
        :meth:`VaultOpening.result` waits for it and returns what :meth:`open` would. With
        ``prepare_saves``, the keys of that many saves are derived next (:meth:`prepare_saves`)."""
        return VaultOpening(_SealedFile.read(Path(path)), secret, farm, prepare_saves)

    @classmethod
    def open_or_create(
        cls,
        path: Path | str,
        secret: VaultSecret,
        farm: str,
        *,
        params: ScryptParams | None = None,
    ) -> KeyVault:
        path = Path(path)
        if path.exists():
            return cls.open(path, secret, farm=farm)
        return cls.create(path, secret, farm, params=params)

    # -- reading --------------------------------------------------------------------------
    def entries(self) -> list[VaultEntry]:
        """Every key, newest first."""
        return list(reversed(self._entries))

    def find(self, fingerprint: str) -> VaultEntry | None:
        for entry in self._entries:
            if entry.fingerprint == fingerprint:
                return entry
        return None

    def current(self) -> VaultEntry | None:
        """The active key, if the farm has one yet."""
        for entry in self._entries:
            if entry.status is KeyStatus.ACTIVE:
                return entry
        return None

    def previous(self) -> VaultEntry | None:
        """The most recently retired key: what a rollback goes back to."""
        best: VaultEntry | None = None
        for entry in self._entries:  # oldest first, so ties go to the later entry
            if entry.status is KeyStatus.RETIRED and (
                best is None or (entry.retired_at or "") >= (best.retired_at or "")
            ):
                best = entry
        return best

    # -- changing -------------------------------------------------------------------------
    def add(
        self, key: MachineKey, run_id: str, *, origin: KeyOrigin = KeyOrigin.GENERATED
    ) -> VaultEntry:
        """Store ``key`` (status generated) and save. A key already stored is left as is."""
        existing = self.find(key.fingerprint())
        if existing is not None:
            return existing
        entry = VaultEntry(
            fingerprint=key.fingerprint(),
            created_at=_utc_now(),
            run_id=run_id,
            status=KeyStatus.GENERATED,
            key=key,
            origin=origin,
        )
        self._commit([*self._entries, entry])
        return entry

    def import_retired(self, key: MachineKey, run_id: str) -> VaultEntry:
        """Record a key the farm held before farmsync managed it, as the key a rollback of
        ``run_id`` goes back to. A key already stored is left as is."""
        existing = self.find(key.fingerprint())
        if existing is not None:
            return existing
        now = _utc_now()
        entry = VaultEntry(
            fingerprint=key.fingerprint(),
            created_at=now,
            run_id=run_id,
            status=KeyStatus.RETIRED,
            key=key,
            origin=KeyOrigin.IMPORTED,
            retired_at=now,
        )
        self._commit([*self._entries, entry])
        return entry

    def mark_active(self, fingerprint: str, run_id: str) -> VaultEntry:
        """Make ``fingerprint`` the farm's key; the key active until now becomes retired."""
        target = self._require(fingerprint)
        if target.status is KeyStatus.ACTIVE:
            return target
        now = _utc_now()
        retired = [
            replace(e, status=KeyStatus.RETIRED, retired_at=now)
            if e.status is KeyStatus.ACTIVE
            else e
            for e in self._entries
        ]
        activated = replace(
            target,
            status=KeyStatus.ACTIVE,
            activated_at=now,
            activated_run=run_id,
            retired_at=None,
        )
        self._commit(_replaced(retired, activated))
        return activated

    def mark_abandoned(self, fingerprint: str) -> VaultEntry:
        """A key that was never deployed (its run was rolled back). Kept, for the record."""
        target = self._require(fingerprint)
        if target.status is KeyStatus.ACTIVE:
            raise ValueError(f"key {fingerprint} is the farm's active key; activate another first")
        if target.status is KeyStatus.ABANDONED:
            return target
        abandoned = replace(target, status=KeyStatus.ABANDONED)
        self._commit(_replaced(self._entries, abandoned))
        return abandoned

    def advance(
        self, generation: int, farm_id: str, takeover: Mapping[str, Any] | None = None
    ) -> None:
        """Record, before any node is touched, the farm marker generation a run is about to
        write (and the farm's id); ``takeover`` records an ``--adopt`` of another vault's farm."""
        ident = self.identity
        takeovers = [*ident.takeovers, dict(takeover)] if takeover else ident.takeovers
        new = replace(
            ident,
            generation=max(ident.generation, generation),
            farm_id=farm_id,
            takeovers=takeovers,
        )
        old, self.identity = self.identity, new
        try:
            self._write()
        except BaseException:
            self.identity = old
            raise

    def change_secret(self, secret: VaultSecret) -> None:
        """Re-encrypt the vault under a new passphrase or key file."""
        old, self._secret = self._secret, secret
        try:
            self._save()
        except BaseException:
            self._secret = old
            raise

    @contextlib.contextmanager
    def one_save(self) -> Iterator[None]:
        """The changes made inside are written by one save when the block ends: all of them,
        or none if the block or the save fails (memory then goes back to what disk has)."""
        if self._batched:  # inside another one: that one saves
            yield
            return
        entries, identity = self._entries, self.identity
        self._batched = True
        try:
            yield
        except BaseException:
            self._entries, self.identity = entries, identity
            raise
        finally:
            self._batched = False
        if self._entries is entries and self.identity is identity:
            return  # nothing changed
        try:
            self._save()
        except BaseException:
            self._entries, self.identity = entries, identity
            raise

    def prepare_saves(self, count: int) -> None:
        """Start deriving the keys of the next ``count`` saves (scrypt over a fresh salt each),
        one after the other in a worker thread, so those saves need not wait for scrypt. Each
        prepared key seals one save only; keys prepared under another secret are dropped."""
        self._prepared = _SaltedKeys(self.params, self._secret, count)

    def _require(self, fingerprint: str) -> VaultEntry:
        entry = self.find(fingerprint)
        if entry is None:
            raise VaultError(f"no key with fingerprint {fingerprint} in vault {self.path}")
        return entry

    def _commit(self, entries: list[VaultEntry]) -> None:
        """Save ``entries`` as the vault's history; on failure memory keeps what disk has."""
        old, self._entries = self._entries, entries
        try:
            self._write()
        except BaseException:
            self._entries = old
            raise

    # -- the file -------------------------------------------------------------------------
    def _document(self) -> bytes:
        doc = {
            "format": FORMAT_VERSION,
            "farm": self.farm,
            "created_at": self.created_at,
            "entries": [e._to_json() for e in self._entries],
            **self.identity.to_json(),
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def _write(self) -> None:
        """Save now or, inside :meth:`one_save`, when it ends."""
        if not self._batched:
            self._save()

    def _seal_key(self) -> tuple[bytes, bytes]:
        """A fresh salt and its key: the next one :meth:`prepare_saves` derived, else now."""
        if self._prepared is not None and self._prepared.secret is self._secret:
            taken = self._prepared.take()
            if taken is not None:
                return taken
        self._prepared = None  # used up, or for a secret this vault no longer has
        salt = os.urandom(16)
        return salt, self.params.derive(self._secret, salt)

    def _save(self) -> None:
        salt, key = self._seal_key()
        nonce = os.urandom(12)
        p = self.params
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, p.log2_n, p.r, p.p, salt, nonce)
        sealed = AESGCM(key).encrypt(nonce, self._document(), header)
        try:
            with state_writes(self.path.parent, f"save the vault {self.path.name}"):
                atomic_write_private(self.path, header + sealed)
        except OSError as e:
            raise VaultError(f"cannot write vault {self.path}: {e.strerror or e}") from None


class _SaltedKeys:
    """The keys of the next saves: a fresh salt each, and scrypt's key for it, derived one
    after the other in a worker thread (scrypt in ``cryptography`` releases the GIL)."""

    def __init__(self, params: ScryptParams, secret: VaultSecret, count: int):
        self.secret = secret
        self._salts = [os.urandom(16) for _ in range(count)]
        self._keys: list[bytes | None] = []  # None: that derivation failed
        self._taken = 0
        self._derived = threading.Condition()
        threading.Thread(
            target=self._derive, args=(params,), name="vault-seal", daemon=True
        ).start()

    def _derive(self, params: ScryptParams) -> None:
        for salt in self._salts:
            key = None
            # On failure the save derives the key again itself, and raises there.
            with contextlib.suppress(BaseException):
                key = params.derive(self.secret, salt)
            with self._derived:
                self._keys.append(key)
                self._derived.notify_all()

    def take(self) -> tuple[bytes, bytes] | None:
        """The next salt and key, once derived; None when none is left (or it failed)."""
        index = self._taken
        if index == len(self._salts):
            return None
        self._taken += 1
        with self._derived:
            self._derived.wait_for(lambda: len(self._keys) > index)
        key = self._keys[index]
        return (self._salts[index], key) if key is not None else None


def _damaged(path: Path) -> VaultError:
    return VaultError(f"cannot open vault {path}: wrong passphrase or damaged file")


@dataclass(frozen=True)
class _SealedFile:
    """A vault file as read from disk: its header checked, its document still encrypted."""

    path: Path
    header: bytes
    params: ScryptParams
    salt: bytes
    nonce: bytes
    sealed: bytes = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> _SealedFile:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"no key vault at {path}") from None
        except OSError as e:
            raise VaultError(f"cannot read vault {path}: {e.strerror}") from None
        if len(data) < _HEADER.size + _TAG_BYTES:
            raise _damaged(path)
        header = data[: _HEADER.size]
        magic, version, log2_n, r, p, salt, nonce = _HEADER.unpack(header)
        if magic != MAGIC or version != FORMAT_VERSION or not 1 <= log2_n < 64:
            raise _damaged(path)
        try:
            params = ScryptParams(n=1 << log2_n, r=r, p=p)
        except ValueError:
            raise _damaged(path) from None
        return cls(path, header, params, salt, nonce, data[_HEADER.size :])

    def unseal(self, secret: VaultSecret, farm: str | None) -> KeyVault:
        """Derive the key (the slow part), decrypt and load; ``farm`` is the one it must be."""
        try:
            key = self.params.derive(secret, self.salt)
            plain = AESGCM(key).decrypt(self.nonce, self.sealed, self.header)
        except (ValueError, InvalidTag):
            raise _damaged(self.path) from None
        try:
            doc = json.loads(plain.decode("utf-8"))
            if doc["format"] != FORMAT_VERSION or not isinstance(doc["farm"], str):
                raise ValueError("bad document")
            entries = [VaultEntry._from_json(e) for e in doc["entries"]]
            created_at = str(doc["created_at"])
            identity = VaultIdentity.from_json(doc, doc["farm"], created_at)
        except (ValueError, KeyError, TypeError):
            # Authenticated yet unreadable: written by a broken or newer farmsync.
            raise _damaged(self.path) from None
        if farm is not None and doc["farm"] != farm:
            raise VaultError(f"vault {self.path} belongs to farm {doc['farm']!r}, not {farm!r}")
        return KeyVault(self.path, secret, doc["farm"], self.params, created_at, entries, identity)


class VaultOpening:
    """A vault being opened in a worker thread (see :meth:`KeyVault.opening`).

    scrypt in ``cryptography`` releases the GIL, so the caller's own work (connecting to
    nodes, reading them) goes on beside it. The thread keeps its outcome, the vault or the
    error :meth:`KeyVault.open` would raise (never logged, never printed), for ``result``.
    """

    def __init__(
        self, sealed: _SealedFile, secret: VaultSecret, farm: str | None, prepare_saves: int
    ):
        self.path = sealed.path
        self._vault: KeyVault | None = None
        self._error: BaseException | None = None
        # The saves' keys need only the header's parameters: derived beside the open, so the
        # first save waits for whichever of the two ends last, not for both in turn.
        self._saves = _SaltedKeys(sealed.params, secret, prepare_saves) if prepare_saves else None
        # A daemon: an interrupted run does not wait for a derivation nobody will use.
        self._thread = threading.Thread(
            target=self._unseal, args=(sealed, secret, farm), name="vault-open", daemon=True
        )
        self._thread.start()

    def _unseal(self, sealed: _SealedFile, secret: VaultSecret, farm: str | None) -> None:
        try:
            vault = sealed.unseal(secret, farm)
            vault._prepared = self._saves
            self._vault = vault
        except BaseException as exc:  # handed to result(), in the caller's thread
            self._error = exc

    def result(self) -> KeyVault:
        """The vault, once its key is derived; raises VaultError as :meth:`KeyVault.open`."""
        self._thread.join()
        if self._error is not None:
            raise self._error.with_traceback(None)
        assert self._vault is not None  # the thread ended with one or the other
        return self._vault


def _replaced(entries: list[VaultEntry], new: VaultEntry) -> list[VaultEntry]:
    """A copy of ``entries`` with the one of ``new``'s fingerprint swapped for ``new``."""
    return [new if e.fingerprint == new.fingerprint else e for e in entries]
