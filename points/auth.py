"""Principals, bearer tokens and enrolment codes.

A token is an opaque random string, shown once when it is created and stored only as its SHA-256
hash (the token carries 160 random bits, so a fast hash is enough: there is nothing to
brute-force). It looks like ``kp_3Yb7QxWmA1c_<secret>``: the part before the second underscore is
a short *visible prefix*, stored in clear, so that a leaked token can be found and revoked. Each
token is bound to one principal and one role, and has an expiry and a revocation time.

An *enrolment code* lets a resident whose identity the counter checked bind a phone to their
wallet: counter staff create it (single use, short-lived), the resident types it into the wallet,
and the wallet receives a resident token. A lost phone: the counter revokes the resident's
tokens and issues a new code; the points stay, because they belong to the resident, not to the
token.

A *device code* does the same for a staff device (a shop's till, a counter PC): an admin creates
it for one member of staff (a till is one), shown once as text and as a QR; the device that
redeems it gets a *device session* (a staff token in the HttpOnly session cookie, renewed while
used, ``points.access.redeem_device_code``). No long-lived token is typed by hand. The redeemed
code keeps the id of the token it gave, which is how device sessions are listed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from points.sqlbase import UTCDateTime

TOKEN_SECRET_BYTES = 20
TOKEN_PREFIX_LENGTH = 11
ENROLMENT_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud easily
ENROLMENT_CODE_LENGTH = 10


class Role(enum.StrEnum):
    RESIDENT = "resident"
    MERCHANT = "merchant"
    ISSUER = "issuer"
    COUNTER = "counter"
    FINANCE = "finance"
    ADMIN = "admin"


class Token(SQLModel, table=True):
    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=32)
    prefix: str = Field(max_length=16, unique=True)
    secret_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    role: str = Field(max_length=16)
    #: A resident id (``res_``) for residents, a staff id (``stf_``) for everyone else.
    principal_id: str = Field(max_length=32, index=True)
    label: str = Field(default="", max_length=200)
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


class EnrolmentCode(SQLModel, table=True):
    __tablename__ = "enrolment_code"

    id: str = Field(primary_key=True, max_length=32)
    code_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False, unique=True))
    resident_id: str = Field(foreign_key="resident.id", max_length=32, index=True)
    created_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


class DeviceCode(SQLModel, table=True):
    """A single-use code that enrols a staff device; ``token_id`` is the session it gave."""

    __tablename__ = "device_code"
    __table_args__ = (
        sa.CheckConstraint("(used_at IS NULL) = (token_id IS NULL)", name="used_token"),
    )

    id: str = Field(primary_key=True, max_length=32)
    code_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False, unique=True))
    staff_id: str = Field(foreign_key="staff.id", max_length=32, index=True)
    #: What the device is, e.g. "the till レジ1 at 狛江珈琲店": the session's label.
    label: str = Field(default="", max_length=200)
    created_by: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    token_id: str | None = Field(
        default=None, foreign_key="api_token.id", max_length=32, unique=True
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the role, the principal's id, and what the principal belongs to."""

    role: Role
    principal_id: str
    token_id: str
    merchant_id: str | None = None
    department_id: str | None = None

    @property
    def resident_id(self) -> str | None:
        return self.principal_id if self.role is Role.RESIDENT else None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token as created: ``secret`` is shown once and never stored."""

    token: Token
    secret: str


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def make_token_secret() -> tuple[str, str]:
    """A fresh token and its visible prefix."""
    prefix = "kp_" + secrets.token_urlsafe(6)[: TOKEN_PREFIX_LENGTH - 3].replace("_", "x")
    return f"{prefix}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}", prefix


def token_prefix(secret: str) -> str | None:
    """The visible prefix of a presented token, or None when it is not shaped like ours."""
    if len(secret) > 200 or not secret.startswith("kp_"):
        return None
    prefix = secret[:TOKEN_PREFIX_LENGTH]
    if (
        len(prefix) != TOKEN_PREFIX_LENGTH
        or secret[TOKEN_PREFIX_LENGTH : TOKEN_PREFIX_LENGTH + 1] != "_"
    ):
        return None
    return prefix


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hash_enrolment_code(code: str, secret_key: bytes) -> bytes:
    """Enrolment codes are short (about 50 bits): their hashes are keyed with the server's
    secret so that a copy of the database cannot be searched for them offline."""
    return hmac.new(secret_key, code.encode("utf-8"), hashlib.sha256).digest()


def make_enrolment_code() -> str:
    return "".join(secrets.choice(ENROLMENT_CODE_ALPHABET) for _ in range(ENROLMENT_CODE_LENGTH))


def normalize_enrolment_code(code: str) -> str:
    """What a person typed, as stored: spaces and dashes dropped, upper case."""
    return "".join(character for character in code.upper() if character not in " -")
