"""The Ed25519 keys that sign every QR token, kept in a key directory every API host mounts.

The directory (``POINTS_KEY_DIR``, mode 0700) holds two files per key, both mode 0600::

    key-00001.pem    the private key, PKCS8 PEM, unencrypted (deleted when the key is retired)
    key-00001.json   {"kid": 1, "status": "active", "created_at": "...", "retired_at": null,
                      "public_key": "<base64url of the raw 32 bytes>"}

A key exists once its ``.json`` exists (the ``.pem`` is written first). Every write goes to a
temporary file in the directory and is moved into place with ``os.replace``, so a reader sees
the old file or the new one, never half of one; writers take an ``flock`` on ``.lock`` so two
hosts rotating at once cannot pick the same key id. A key file that the group or others may
read, or a directory they may write, is refused (``key_file_unsafe``): the private keys never
leave this directory (never the database, a log line or a response).

Statuses: exactly one key is ``active`` (it signs); ``verifying`` keys (rotated away) still
verify the tokens they signed; ``retired`` keys never verify again, and their private key is
deleted (the public key stays in the ``.json`` so a token of a retired key is told apart from
one of an unknown key). During a rotation the new key is written ``active`` before the old one
becomes ``verifying``; should a reader see two active keys, the higher id signs and the other
only verifies.

``KeyRing`` caches what it read. It re-reads the directory when ``lookup`` meets an unknown key
id (a rotation on another host needs no restart; the re-read is skipped when the directory has
not changed and was read less than a second ago, so forged ids cannot make a host read the
disk on every request), and at most every ``refresh_seconds`` (60 by default) otherwise, so a
retirement is seen within a minute everywhere.

The directory also holds ``pin-pepper`` (32 random bytes, mode 0600): the server-side secret
mixed into every card PIN hash (``redemption.cards``), kept here and never in the database, so a
copy of the database alone cannot test PINs. ``points keys init`` writes it with the first key,
and on a directory whose keys predate it, writes only the pepper. Losing it voids every PIN (the
residents choose new ones at the counter), as losing the keys voids every printed code.

Printed tokens (store QR codes at tills, residents' cards) keep working as long as their key
verifies, so retiring a key they use is refused unless forced; the tables of printed tokens
come with later issues and register a counter in ``PRINTED_TOKEN_COUNTERS`` (the shell does,
in ``points.shell.wiring``).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Engine
from sqlmodel import Session

from points.errors import (
    KeyActive,
    KeyDirectoryMissing,
    KeyExists,
    KeyFileUnsafe,
    KeyInUse,
    KeyNotFound,
    NoPinPepper,
    NoSigningKey,
)

ALGORITHM = "Ed25519"
MAX_KID = 65_535
PrintedTokenCounter = Callable[[Session | Engine, int], int]
#: Counters of live printed tokens signed with a key: ``counter(engine, kid) -> count``.
PRINTED_TOKEN_COUNTERS: list[PrintedTokenCounter] = []
#: Seconds after which an unchanged directory is read again on an unknown key id.
UNKNOWN_KID_REREAD_SECONDS = 1.0


PEPPER_FILE = "pin-pepper"
PEPPER_SIZE = 32


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    VERIFYING = "verifying"
    RETIRED = "retired"


@dataclass(frozen=True)
class PublicKeyInfo:
    kid: int
    status: KeyStatus
    public_key: Ed25519PublicKey
    created_at: datetime
    retired_at: datetime | None

    @property
    def public_key_text(self) -> str:
        """The raw 32 bytes of the public key in base64url without padding."""
        return _b64(_raw(self.public_key))


@dataclass(frozen=True)
class _Key:
    info: PublicKeyInfo
    private_key: Ed25519PrivateKey | None


def printed_tokens(target: Session | Engine, kid: int) -> int:
    """Live printed tokens signed with ``kid``, summed over the registered counters."""
    return sum(counter(target, kid) for counter in PRINTED_TOKEN_COUNTERS)


class KeyRing:
    """The keys of a directory, read lazily and cached (see the module docstring)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        refresh_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._keys: dict[int, _Key] = {}
        self._read_at: float | None = None
        self._directory_mtime: int | None = None
        self._pepper: bytes | None = None

    def signing_key(self) -> tuple[int, Ed25519PrivateKey]:
        self._fresh()
        key = _signer(self._keys)
        if key is None or key.private_key is None:
            raise NoSigningKey(
                f"no active signing key in {self.directory} (POINTS_KEY_DIR); "
                "create one with `points keys init`",
                key_dir=str(self.directory),
            )
        return key.info.kid, key.private_key

    def lookup(self, kid: int) -> PublicKeyInfo | None:
        self._fresh()
        if kid not in self._keys and self._may_reread():
            self.reload()
        key = self._keys.get(kid)
        return key.info if key is not None else None

    def pin_pepper(self) -> bytes:
        """The card PIN pepper of this directory (read once; it never changes)."""
        if self._pepper is None:
            self._pepper = read_pin_pepper(self.directory)
        return self._pepper

    def public_keys(self) -> list[PublicKeyInfo]:
        self._fresh()
        return [key.info for _, key in sorted(self._keys.items())]

    def reload(self) -> None:
        self._directory_mtime = _mtime(self.directory)
        self._keys = _effective(read_keys(self.directory)) if self.directory.is_dir() else {}
        self._read_at = self._monotonic()

    def _fresh(self) -> None:
        if self._read_at is None or self._monotonic() - self._read_at >= self.refresh_seconds:
            self.reload()

    def _may_reread(self) -> bool:
        assert self._read_at is not None
        return (
            _mtime(self.directory) != self._directory_mtime
            or self._monotonic() - self._read_at >= UNKNOWN_KID_REREAD_SECONDS
        )


# Reading -----------------------------------------------------------------------------------


def list_keys(directory: Path) -> list[PublicKeyInfo]:
    """Every key of the directory, by id, as a ``KeyRing`` sees them; a missing directory is
    refused (``key_directory_missing``)."""
    return [key.info for _, key in sorted(_effective(read_keys(directory)).items())]


def read_keys(directory: Path) -> dict[int, _Key]:
    """Every key of the directory as written (two active keys are possible mid-rotation)."""
    _check_directory(directory)
    keys: dict[int, _Key] = {}
    for sidecar in sorted(directory.glob("key-*.json")):
        key = _read_key(directory, sidecar)
        keys[key.info.kid] = key
    return keys


def read_pin_pepper(directory: Path) -> bytes:
    _check_directory(directory)
    path = directory / PEPPER_FILE
    if not path.exists():
        raise NoPinPepper(
            f"{directory} (POINTS_KEY_DIR) holds no {PEPPER_FILE}; `points keys init` writes it",
            key_dir=str(directory),
        )
    _check_file(path)
    pepper = path.read_bytes()
    if len(pepper) != PEPPER_SIZE:
        raise KeyFileUnsafe(f"{path} is not {PEPPER_SIZE} bytes", path=str(path))
    return pepper


def _read_key(directory: Path, sidecar: Path) -> _Key:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        kid = int(meta["kid"])
        info = PublicKeyInfo(
            kid=kid,
            status=KeyStatus(meta["status"]),
            public_key=Ed25519PublicKey.from_public_bytes(_unb64(meta["public_key"])),
            created_at=datetime.fromisoformat(meta["created_at"]),
            retired_at=datetime.fromisoformat(meta["retired_at"]) if meta["retired_at"] else None,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise KeyFileUnsafe(f"{sidecar} cannot be read: {error}", path=str(sidecar)) from error
    if sidecar.name != f"key-{kid:05d}.json" or not 1 <= kid <= MAX_KID:
        raise KeyFileUnsafe(f"{sidecar} holds key {kid}, not its own", path=str(sidecar))
    if info.status is KeyStatus.RETIRED:
        return _Key(info, None)
    pem = _pem_path(directory, kid)
    if not pem.exists():
        raise KeyFileUnsafe(f"{pem} is missing (key {kid} is {info.status})", path=str(pem))
    _check_file(pem)
    try:
        private_key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileUnsafe(f"{pem} is not a readable private key", path=str(pem)) from error
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFileUnsafe(f"{pem} is not an Ed25519 private key", path=str(pem))
    if _raw(private_key.public_key()) != _raw(info.public_key):
        raise KeyFileUnsafe(f"{pem} does not match the public key in {sidecar}", path=str(pem))
    return _Key(info, private_key)


def _effective(keys: dict[int, _Key]) -> dict[int, _Key]:
    """Mid-rotation, the highest active key signs and the other active ones only verify."""
    signer = _signer(keys)
    return {
        kid: (
            _Key(replace(key.info, status=KeyStatus.VERIFYING), key.private_key)
            if key.info.status is KeyStatus.ACTIVE and key is not signer
            else key
        )
        for kid, key in keys.items()
    }


def _signer(keys: dict[int, _Key]) -> _Key | None:
    active = [key for key in keys.values() if key.info.status is KeyStatus.ACTIVE]
    return max(active, key=lambda key: key.info.kid) if active else None


def _check_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise KeyDirectoryMissing(
            f"the key directory {directory} (POINTS_KEY_DIR) does not exist; "
            "create the first key with `points keys init`",
            key_dir=str(directory),
        )
    if directory.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise KeyFileUnsafe(
            f"the key directory {directory} may be written by others; chmod 700 it",
            path=str(directory),
        )


def _check_file(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileUnsafe(
            f"the key file {path} may be read by others (mode {stat.S_IMODE(mode):04o}); "
            "chmod 600 it",
            path=str(path),
        )


# Writing -----------------------------------------------------------------------------------


def init_keys(directory: Path, now: datetime) -> PublicKeyInfo | None:
    """Create the directory (0700), the PIN pepper and the first, active key. On a directory
    whose keys exist, write the pepper if it is missing (and return None); refused when the
    pepper exists too."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(directory):
        existing = read_keys(directory)
        if existing and _ensure_pepper(directory):
            return None
        if existing:
            raise KeyExists(
                f"{directory} already holds {len(existing)} key(s); "
                "use `points keys rotate` for a new one",
                key_dir=str(directory),
            )
        _ensure_pepper(directory)
        return _create_key(directory, 1, now)


def ensure_key(directory: Path, now: datetime) -> PublicKeyInfo | None:
    """Development only: the first key, created when the directory holds none (None when a
    key exists already)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(directory):
        if read_keys(directory):
            _ensure_pepper(directory)
            return None
        _ensure_pepper(directory)
        return _create_key(directory, 1, now)


def rotate(directory: Path, now: datetime) -> PublicKeyInfo:
    """A new active key; the previous active key (or keys) become verifying."""
    with _locked(directory):
        keys = read_keys(directory)
        if not keys:
            raise NoSigningKey(
                f"{directory} holds no key; create the first with `points keys init`",
                key_dir=str(directory),
            )
        kid = max(keys) + 1
        if kid > MAX_KID:
            raise KeyExists(f"key ids are used up to {MAX_KID}", key_dir=str(directory))
        created = _create_key(directory, kid, now)
        for key in keys.values():
            if key.info.status is KeyStatus.ACTIVE:
                _write_meta(directory, replace(key.info, status=KeyStatus.VERIFYING))
        return created


def retire(
    directory: Path, kid: int, now: datetime, *, live_printed_tokens: int, force: bool
) -> PublicKeyInfo:
    """Stop ``kid`` verifying for good and delete its private key. Refused for the active key
    and, unless forced, while live printed tokens use it. Retiring a retired key changes
    nothing."""
    with _locked(directory):
        keys = _effective(read_keys(directory))
        key = keys.get(kid)
        if key is None:
            raise KeyNotFound(f"no key {kid} in {directory}", kid=kid)
        if key.info.status is KeyStatus.RETIRED:
            return key.info
        if key.info.status is KeyStatus.ACTIVE:
            raise KeyActive(
                f"key {kid} is the active signing key; rotate first (`points keys rotate`)",
                kid=kid,
            )
        if live_printed_tokens and not force:
            raise KeyInUse(
                f"{live_printed_tokens} live printed token(s) use key {kid} and would all stop "
                "working; reprint them first, or add --force",
                kid=kid,
                live_printed_tokens=live_printed_tokens,
            )
        retired = replace(key.info, status=KeyStatus.RETIRED, retired_at=now)
        _write_meta(directory, retired)
        _pem_path(directory, kid).unlink(missing_ok=True)
        return retired


def _ensure_pepper(directory: Path) -> bool:
    """Write a new PIN pepper unless one exists; True when it wrote one."""
    path = directory / PEPPER_FILE
    if path.exists():
        return False
    _atomic_write(path, os.urandom(PEPPER_SIZE))
    return True


def _create_key(directory: Path, kid: int, now: datetime) -> PublicKeyInfo:
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(_pem_path(directory, kid), pem)
    info = PublicKeyInfo(
        kid=kid,
        status=KeyStatus.ACTIVE,
        public_key=private_key.public_key(),
        created_at=now,
        retired_at=None,
    )
    _write_meta(directory, info)
    return info


def _write_meta(directory: Path, info: PublicKeyInfo) -> None:
    meta = {
        "kid": info.kid,
        "status": info.status.value,
        "created_at": info.created_at.isoformat(),
        "retired_at": info.retired_at.isoformat() if info.retired_at else None,
        "public_key": info.public_key_text,
    }
    _atomic_write(directory / f"key-{info.kid:05d}.json", json.dumps(meta, indent=1).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    _check_directory(directory)
    descriptor = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _pem_path(directory: Path, kid: int) -> Path:
    return directory / f"key-{kid:05d}.pem"


def _mtime(directory: Path) -> int | None:
    try:
        return directory.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
