"""Signed QR tokens: one versioned binary layout for every kind, signed with Ed25519.

Every QR code of the system carries one token, so that a wallet or a shop's device can tell a
genuine code from a sticker pasted over it (offline, with the public keys of
``GET /api/v1/keys``) and the server refuses forgeries, replays and expired codes with a code of
their own (``points.errors.TokenRefused``). ``docs/tokens.md`` repeats this layout for other
implementations.

Layout (all integers unsigned, big-endian; offsets in bytes)::

    offset  size  field
    0       1     version            1
    1       1     kind               1 store, 2 payment, 3 pay code, 4 card, 5 event
    2       2     kid                the signing key's id, 1..65535
    4       n     the kind's fields  below
    4+n     64    signature          Ed25519 over bytes 0 .. 4+n-1 (everything before it)

    kind       fields (n bytes)                                   total  base32 chars
    store      till id (16 random bytes)                  n = 16   84     135
    payment    payment request id (16 bytes), amount (uint64,
               1 .. 2**63-1), expiry (uint32, Unix seconds)  n = 28   96     154
    pay code   code id (16 random bytes), expiry (uint32)   n = 20   88     141
    card       card id (16 random bytes)                  n = 16   84     135
    event      event id (uint64), slot (uint32: Unix seconds
               // 30, the 30-second slot the screen shows)   n = 12   80     128

No kind carries a separate nonce: the once-only kinds (payment, pay code) carry a unique random
id, and the reusable kinds (store, card, event) are meant to be the same every time they are
signed (Ed25519 signatures are deterministic). Store and card tokens do not expire (the server
revokes them through their till or card); a payment expires at most 5 minutes after signing, a
pay code at most 90 seconds; ``sign`` refuses longer.

Text form: the public origin uppercased (``POINTS_PUBLIC_URL``, scheme and host only), ``/Q/``,
and the token's bytes in base32 (RFC 4648, uppercase, no padding), for example
``HTTPS://PAY.EXAMPLE.JP/Q/AEBAAAI...``: every character is in the QR alphanumeric set, so the
code stays small (version 10 at error correction M at most, with a 40-character origin), and a
phone's camera opens the wallet page ``GET /Q/{text}``. Reading is case-insensitive and ignores
spaces, tabs and line ends around the text; a character outside ASCII and non-canonical base32
(padding, a 0 for an O, unused trailing bits set) are malformed, so each token has one text.

``verify`` judges, in this order: malformed, unknown key, retired key, signature, wrong kind,
expired (by the server's clock only: an event token is accepted in its slot, the next one, and
the slot before it, that is from 30 seconds before its slot starts until 30 seconds after it
ends), revoked (a lookup per kind that the caller passes; the till and card tables come with
their issues). ``mark_used`` writes the once-only row (table ``used_token``) in the caller's
transaction, so that a replay never wins a race: the loser of a race on the unique key is run
again by the unit of work and then finds the row (``token_used``). The purge job deletes rows a
day after their token expired.

Keys come from a ``KeySource`` (``points.keys.KeyRing`` in the application; tests pass an
in-memory one): this module only needs its protocol.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import secrets
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlmodel import Field, Session, SQLModel

from points.errors import (
    InvalidInput,
    TokenExpired,
    TokenKeyRetired,
    TokenMalformed,
    TokenRevoked,
    TokenSignatureInvalid,
    TokenUnknownKey,
    TokenUsed,
    TokenWrongKind,
)
from points.sqlbase import UTCDateTime

VERSION = 1
SIGNATURE_SIZE = 64
HEADER = struct.Struct(">BBH")
ID_SIZE = 16
SLOT_SECONDS = 30
PAYMENT_LIFETIME_MAX = timedelta(minutes=5)
PAY_CODE_LIFETIME_MAX = timedelta(seconds=90)
INT64_MAX = 2**63 - 1
#: Amounts and event ids are stored as signed 64-bit integers too.
AMOUNT_MAX = INT64_MAX
UINT32_MAX = 2**32 - 1
PATH = "/Q/"
ORIGIN_LENGTH_MAX = 40
#: The characters of the QR alphanumeric mode: every token text is made of these.
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
#: What a scanner may add around a text (and ``verify`` ignores).
WHITESPACE = " \t\r\n"
#: Used-token rows are kept this long after their token expired (then purged).
USED_KEPT = timedelta(days=1)


class Kind(enum.IntEnum):
    STORE = 1
    PAYMENT = 2
    PAY_CODE = 3
    CARD = 4
    EVENT = 5


# Keys: the protocol of ``points.keys.KeyRing`` this module depends on ------------------------


class VerifyingKey(Protocol):
    @property
    def kid(self) -> int: ...

    @property
    def status(self) -> str: ...  # "active", "verifying" or "retired" (``KeyStatus``)

    @property
    def public_key(self) -> Ed25519PublicKey: ...


class KeySource(Protocol):
    def signing_key(self) -> tuple[int, Ed25519PrivateKey]: ...

    def lookup(self, kid: int) -> VerifyingKey | None: ...


# Tokens --------------------------------------------------------------------------------------


def new_id() -> bytes:
    """A random id for a till, card, pay code or payment request (128 bits)."""
    return secrets.token_bytes(ID_SIZE)


def slot_of(now: datetime) -> int:
    """The 30-second event slot ``now`` falls in."""
    return int(now.timestamp()) // SLOT_SECONDS


def _seconds_left(until: datetime, now: datetime) -> int:
    return max(0, math.ceil((until - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class StoreToken:
    """Printed at a shop's till, reused; the server resolves (and can revoke) the till id."""

    till_id: bytes
    kid: int = 0  # the key that signed it (set by ``verify``; ignored by ``sign``)
    kind = Kind.STORE


@dataclass(frozen=True, slots=True)
class PaymentToken:
    """Shown by a shop's device for one payment; used once."""

    request_id: bytes
    amount: int
    expires_at: datetime
    kid: int = 0
    kind = Kind.PAYMENT

    def seconds_left(self, now: datetime) -> int:
        return _seconds_left(self.expires_at, now)


@dataclass(frozen=True, slots=True)
class PayCodeToken:
    """Shown by a resident's wallet for a shop to scan; the code id maps to the resident."""

    code_id: bytes
    expires_at: datetime
    kid: int = 0
    kind = Kind.PAY_CODE

    def seconds_left(self, now: datetime) -> int:
        return _seconds_left(self.expires_at, now)


@dataclass(frozen=True, slots=True)
class CardToken:
    """Printed on a resident's card; no secret; revocable."""

    card_id: bytes
    kid: int = 0
    kind = Kind.CARD


@dataclass(frozen=True, slots=True)
class EventToken:
    """Shown on an organizer's screen for one 30-second slot."""

    event_id: int
    slot: int
    kid: int = 0
    kind = Kind.EVENT

    @property
    def expires_at(self) -> datetime:
        """The end of the next slot: the last instant the token is accepted."""
        return datetime.fromtimestamp((self.slot + 2) * SLOT_SECONDS, UTC)

    def seconds_left(self, now: datetime) -> int:
        return _seconds_left(self.expires_at, now)


Token = StoreToken | PaymentToken | PayCodeToken | CardToken | EventToken
#: The kinds a token may be used once only (``mark_used``).
ONCE_ONLY = frozenset({Kind.PAYMENT, Kind.PAY_CODE})
#: The size of each kind's fields (the ``n`` of the layout).
FIELD_SIZES = {
    Kind.STORE: ID_SIZE,
    Kind.PAYMENT: ID_SIZE + 8 + 4,
    Kind.PAY_CODE: ID_SIZE + 4,
    Kind.CARD: ID_SIZE,
    Kind.EVENT: 8 + 4,
}
#: The shortest and longest base32 part of a token's text (event, payment).
TEXT_LENGTHS = (
    math.ceil((HEADER.size + min(FIELD_SIZES.values()) + SIGNATURE_SIZE) * 8 / 5),
    math.ceil((HEADER.size + max(FIELD_SIZES.values()) + SIGNATURE_SIZE) * 8 / 5),
)
RevocationLookups = Mapping[Kind, Callable[[Token], bool]]


def _epoch(instant: datetime) -> int:
    if instant.tzinfo is None:
        raise InvalidInput("instants must carry a time zone")
    return int(instant.timestamp())


def _check_id(value: bytes, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise InvalidInput(f"{name} must be {ID_SIZE} bytes")


def _expiry(expires_at: datetime, now: datetime, longest: timedelta) -> bytes:
    seconds = _epoch(expires_at)
    if not now.timestamp() < seconds <= (now + longest).timestamp():
        raise InvalidInput(
            f"a token's expiry must be after now and at most {int(longest.total_seconds())} "
            "seconds from now"
        )
    return struct.pack(">I", seconds)


def _fields(token: Token, now: datetime) -> bytes:
    match token:
        case StoreToken(till_id=till_id):
            _check_id(till_id, "till id")
            return till_id
        case CardToken(card_id=card_id):
            _check_id(card_id, "card id")
            return card_id
        case PaymentToken(request_id=request_id, amount=amount, expires_at=expires_at):
            _check_id(request_id, "payment request id")
            if not 1 <= amount <= AMOUNT_MAX:
                raise InvalidInput(f"a payment's amount must be 1 .. {AMOUNT_MAX}")
            return (
                request_id
                + struct.pack(">Q", amount)
                + _expiry(expires_at, now, PAYMENT_LIFETIME_MAX)
            )
        case PayCodeToken(code_id=code_id, expires_at=expires_at):
            _check_id(code_id, "pay code id")
            return code_id + _expiry(expires_at, now, PAY_CODE_LIFETIME_MAX)
        case EventToken(event_id=event_id, slot=slot):
            if not 1 <= event_id <= INT64_MAX or not 0 <= slot <= UINT32_MAX:
                raise InvalidInput("an event token needs an event id and a slot in range")
            return struct.pack(">QI", event_id, slot)
    raise InvalidInput(f"not a token: {token!r}")  # pragma: no cover


def text_prefix(origin: str) -> str:
    """What every token's text of ``origin`` starts with: ``HTTPS://PAY.EXAMPLE.JP/Q/``."""
    return origin.rstrip("/").upper() + PATH


def sign(token: Token, keys: KeySource, now: datetime, *, origin: str) -> str:
    """The token's text (origin, ``/Q/``, base32), signed with the active key. The origin is at
    most 40 characters of the QR alphanumeric set once uppercased (``POINTS_PUBLIC_URL``)."""
    prefix = text_prefix(origin)
    if len(prefix) > ORIGIN_LENGTH_MAX + len(PATH) or not set(prefix) <= QR_ALPHANUMERIC:
        raise InvalidInput(
            f"the public origin must be at most {ORIGIN_LENGTH_MAX} characters of the QR "
            "alphanumeric set once uppercased (scheme and host only)"
        )
    fields = _fields(token, now)
    kid, private_key = keys.signing_key()
    body = HEADER.pack(VERSION, token.kind, kid) + fields
    raw = body + private_key.sign(body)
    return prefix + base64.b32encode(raw).decode("ascii").rstrip("=")


def _decode(text: str, origin: str) -> bytes:
    prefix = text_prefix(origin)
    if not text.isascii():
        raise TokenMalformed("not a QR token of this service")
    upper = text.strip(WHITESPACE).upper()
    if not upper.startswith(prefix):
        raise TokenMalformed("not a QR token of this service")
    encoded = upper[len(prefix) :]
    if not TEXT_LENGTHS[0] <= len(encoded) <= TEXT_LENGTHS[1]:
        raise TokenMalformed("the token's length is wrong")
    try:
        raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    except (binascii.Error, ValueError):
        raise TokenMalformed("the token is not base32") from None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != encoded:
        raise TokenMalformed("the token is not canonical base32")
    return raw


def unverified_kind(encoded: str) -> Kind | None:
    """The kind a token's base32 part (the text after ``/Q/``, either case) says it is, without
    checking its signature or anything else: None when it is not one of this layout. Only for
    choosing which page a phone's camera sees (``GET /Q/{text}``), never for trusting a token:
    anyone can write any kind byte."""
    upper = encoded.upper()
    if not (upper.isascii() and TEXT_LENGTHS[0] <= len(upper) <= TEXT_LENGTHS[1]):
        return None
    try:
        raw = base64.b32decode(upper + "=" * (-len(upper) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < HEADER.size or raw[0] != VERSION or raw[1] not in FIELD_SIZES:
        return None
    kind = Kind(raw[1])
    if len(raw) != HEADER.size + FIELD_SIZES[kind] + SIGNATURE_SIZE:
        return None
    return kind


def _parse(raw: bytes, kid: int) -> Token:
    kind = Kind(raw[1])
    fields = raw[HEADER.size : -SIGNATURE_SIZE]
    if kind is Kind.STORE:
        return StoreToken(fields, kid)
    if kind is Kind.CARD:
        return CardToken(fields, kid)
    if kind is Kind.PAYMENT:
        amount, expiry = struct.unpack(">QI", fields[ID_SIZE:])
        if not 1 <= amount <= AMOUNT_MAX:
            raise TokenMalformed("the payment's amount is out of range")
        return PaymentToken(fields[:ID_SIZE], amount, datetime.fromtimestamp(expiry, UTC), kid)
    if kind is Kind.PAY_CODE:
        (expiry,) = struct.unpack(">I", fields[ID_SIZE:])
        return PayCodeToken(fields[:ID_SIZE], datetime.fromtimestamp(expiry, UTC), kid)
    event_id, slot = struct.unpack(">QI", fields)
    return EventToken(event_id, slot, kid)


def _expired(token: Token, now: datetime) -> bool:
    if isinstance(token, EventToken):
        return not -1 <= slot_of(now) - token.slot <= 1
    if isinstance(token, PaymentToken | PayCodeToken):
        return now >= token.expires_at
    return False


def verify(
    text: str,
    *,
    expect: set[Kind] | frozenset[Kind],
    keys: KeySource,
    now: datetime,
    origin: str,
    revoked: RevocationLookups | None = None,
) -> Token:
    """The token a scanned text carries, or a ``TokenRefused`` saying why not (the module's
    docstring gives the order). ``revoked`` maps a kind to its revocation lookup."""
    raw = _decode(text, origin)
    if len(raw) < HEADER.size + SIGNATURE_SIZE:
        raise TokenMalformed("the token is too short")
    version, kind_byte, kid = HEADER.unpack_from(raw)
    if version != VERSION:
        raise TokenMalformed(f"unknown token version {version}")
    if kind_byte not in FIELD_SIZES:
        raise TokenMalformed("unknown token kind")
    kind = Kind(kind_byte)
    if len(raw) != HEADER.size + FIELD_SIZES[kind] + SIGNATURE_SIZE:
        raise TokenMalformed("the token's length is wrong for its kind")
    key = keys.lookup(kid) if kid else None
    if key is None:
        raise TokenUnknownKey("the token was signed with an unknown key", kid=kid)
    if key.status == "retired":
        raise TokenKeyRetired("the token was signed with a retired key", kid=kid)
    try:
        key.public_key.verify(raw[-SIGNATURE_SIZE:], raw[:-SIGNATURE_SIZE])
    except InvalidSignature:
        raise TokenSignatureInvalid("the token's signature is not valid") from None
    token = _parse(raw, kid)
    if kind not in expect:
        raise TokenWrongKind(
            f"a {kind.name.lower()} token is not expected here",
            kind=kind.name.lower(),
            expected=", ".join(sorted(k.name.lower() for k in expect)),
        )
    if _expired(token, now):
        raise TokenExpired("the token has expired")
    lookup = (revoked or {}).get(kind)
    if lookup is not None and lookup(token):
        raise TokenRevoked("the token was revoked")
    return token


# Used tokens ---------------------------------------------------------------------------------


class UsedToken(SQLModel, table=True):
    """A once-only token that was used: unique per (kind, token id)."""

    __tablename__ = "used_token"
    __table_args__ = (sa.UniqueConstraint("kind", "token_id", name="uq_used_token_kind_token_id"),)

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    kind: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    token_id: bytes = Field(sa_column=sa.Column(sa.LargeBinary(ID_SIZE), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    used_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


def _token_id(token: Token) -> tuple[bytes, datetime]:
    if isinstance(token, PaymentToken):
        return token.request_id, token.expires_at
    if isinstance(token, PayCodeToken):
        return token.code_id, token.expires_at
    raise InvalidInput(f"a {token.kind.name.lower()} token is not used once only")


def mark_used(session: Session, token: Token, now: datetime) -> None:
    """Record a once-only token as used, in the caller's transaction (with whatever it pays
    for); ``TokenUsed`` if it was. Two racing callers: one loses on the unique key, and its unit
    of work (``points.uow``, ``uq_used_token_kind_token_id`` is a race constraint) is run again
    and answers ``TokenUsed``."""
    token_id, expires_at = _token_id(token)
    used = session.exec(
        sa.select(UsedToken.id).where(  # type: ignore[call-overload]
            UsedToken.kind == int(token.kind), UsedToken.token_id == token_id
        )
    ).first()
    if used is not None:
        raise TokenUsed("the token was used already")
    session.add(
        UsedToken(kind=int(token.kind), token_id=token_id, expires_at=expires_at, used_at=now)
    )
    session.flush()


def purge_used(session: Session, *, before: datetime) -> int:
    """Delete the rows of tokens that expired before ``before`` (the purge job)."""
    result = session.execute(sa.delete(UsedToken).where(UsedToken.expires_at < before))  # type: ignore[arg-type]
    return int(result.rowcount)  # type: ignore[attr-defined]
